"""Reading objects back: which job an object belongs to, and what went wrong, in words a user can act on."""

from __future__ import annotations

from services.orchestrator.launchers.kubernetes.labels import JOB_ID, Manifest

# Container states that will not get better by waiting: fail the workload now, with the reason.
FATAL_WAITING = frozenset(
    {"ErrImageNeverPull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


def metadata_of(obj: Manifest) -> Manifest:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def job_id_of(obj: Manifest) -> str | None:
    meta = metadata_of(obj)
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    value = annotations.get(JOB_ID) or labels.get(JOB_ID)
    return str(value) if value else None


def true_condition(obj: Manifest, kind: str) -> Manifest | None:
    """The condition ``kind`` of ``obj`` when it holds (status ``True``)."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _tail(text: str, limit: int = 600) -> str:
    # The end of a crash's log says what went wrong: keep that, not the start (unlike truncate).
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def describe_pod_problem(pod: Manifest, container_name: str) -> str | None:
    """What went wrong with ``pod``, in words a user can act on; ``None`` when nothing did."""
    name = metadata_of(pod).get("name", "?")
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return f"pod {name} was evicted: {status.get('message') or 'the node ran short of resources'}"
    for container in status.get("containerStatuses") or []:
        if container.get("name") != container_name:
            continue
        state = container.get("state") or {}
        last = container.get("lastState") or {}
        terminated = state.get("terminated") or last.get("terminated")
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING:
            detail = waiting.get("message") or ""
            text = f"the {container_name} container of pod {name} cannot start: {reason}"
            return f"{text}: {detail}" if detail else text
        if terminated and terminated.get("exitCode", 0) != 0:
            code = terminated.get("exitCode")
            if terminated.get("reason") == "OOMKilled":
                return (
                    f"the {container_name} in pod {name} was OOMKilled (exit code {code}): it needed more memory "
                    "than its limit; use a smaller batch size or model, or raise the memory limit "
                    "(KAFKAML_TRAINER_MEMORY_MB or KAFKAML_K8S_*_MEMORY_LIMIT)"
                )
            message = terminated.get("message") or ""
            how = (
                f"was killed by signal {code - 128}"
                if isinstance(code, int) and code > 128
                else f"exited with code {code}"
            )
            text = f"the {container_name} in pod {name} {how}"
            if terminated.get("reason") and terminated.get("reason") not in ("Error", "Completed"):
                text += f" ({terminated['reason']})"
            return f"{text}: {_tail(message)}" if message.strip() else text
        if reason == "CrashLoopBackOff":
            return f"the {container_name} in pod {name} keeps crashing: {waiting.get('message', '')}".rstrip(": ")
    if status.get("phase") == "Pending":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return f"pod {name} cannot be scheduled: {condition.get('message', '')}".rstrip(": ")
    if status.get("phase") == "Failed":
        return f"pod {name} failed: {status.get('reason') or ''} {status.get('message') or ''}".strip()
    return None


def describe_job_failure(job: Manifest, note: str | None) -> str:
    """Why a Job failed: its condition, with the last pod problem seen."""
    failed = true_condition(job, "Failed") or {}
    reason = failed.get("reason") or "Failed"
    message = failed.get("message") or ""
    name = metadata_of(job).get("name", "?")
    if reason == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        text = (
            f"the training ran past its deadline of {deadline} s and was stopped (Job {name}); "
            "raise KAFKAML_K8S_TRAINER_DEADLINE_S for longer trainings"
        )
        return f"{text}; last seen: {note}" if note else text
    if note:
        return note
    return f"the trainer's Job {name} failed: {reason}" + (f": {message}" if message else "")
