"""The inferencer: one worker process per replica of an inference.

It reads its ``ServeModel`` spec and the model artifact from Kafka (it has no
database credentials), joins the inference's consumer group on the input
topic, predicts in micro-batches and produces one ``{"values": [...]}`` per
input (or, in a distributed chain, the tensor for the upper model), with
statistics on the events topic. Entry point: ``python -m services.inferencer
--job-id ID --replica N``; see :mod:`services.inferencer.replica`.
"""
