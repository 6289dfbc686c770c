"""The inferencer: one worker process per replica of an inference.

It takes its ``ServeSpec`` as handed over (it has no database credentials), reads
the model artifact from Kafka, joins the inference's consumer group on the input
topic, predicts in micro-batches and produces one ``{"values": ...}`` per input
(or, in a distributed chain, the tensor for the upper model), each naming the
model version that made it, with statistics on the events topic; it switches
versions when the jobs topic says so. Entry point: ``python -m services.inferencer
--spec-file PATH|- --replica N``; see :mod:`services.inferencer.replica`.
"""
