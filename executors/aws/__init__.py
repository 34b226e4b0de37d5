"""What the AWS executors share, one concept per module.

``clients`` (boto3 sessions, retries, error codes), ``polling`` (backoff and bounded waits),
``outcomes`` (each engine's terminal states and the errors remote work ends with), ``record``
(what a task call remembers so that nothing is submitted twice), ``inflight`` (remote work a
``cancel()`` must stop), ``work`` (the lifecycle of one piece of remote work), ``executor`` (the
base class), ``tablespec`` (external tables), ``states`` (Step Functions fragments), ``notify``.
"""
