"""The page of a list: what q keeps, where limit and offset cut, the total header."""

from __future__ import annotations

from fastapi import Response

from services.api.routes.listing import PageParams, page_params, paginate, words


def test_a_page_is_cut_from_the_matching_items_and_the_total_counts_them_all() -> None:
    items = ["digits-keras", "digits-torch", "mnist", "Digits-big"]
    response = Response()
    page = paginate(response, items, page_params(limit=2, offset=1, q="  DIGITS "), str)
    assert page == ["digits-torch", "Digits-big"]
    assert response.headers["X-Total-Count"] == "3"


def test_without_parameters_everything_comes() -> None:
    response = Response()
    assert paginate(response, [1, 2, 3], PageParams(limit=None, offset=0, q=None), str) == [1, 2, 3]
    assert response.headers["X-Total-Count"] == "3"
    assert page_params(q="   ").q is None, "a blank filter keeps everything"


def test_an_offset_past_the_end_is_an_empty_page() -> None:
    response = Response()
    assert paginate(response, [1, 2], page_params(offset=5), str) == []
    assert response.headers["X-Total-Count"] == "2"


def test_words_join_fields_and_skip_none() -> None:
    assert words(3, "digits", None, "tensorflow") == "3 digits  tensorflow"
