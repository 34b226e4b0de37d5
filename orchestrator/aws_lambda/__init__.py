"""The AWS Lambda adapter: ``orchestrator.aws_lambda.handler`` runs routines from Lambda events.

``runner`` parses events and runs them; ``trust`` is what an untrusted (event) routine may name;
``output`` writes the JSON lines CloudWatch expects.
"""
from .runner import handler

__all__ = ["handler"]
