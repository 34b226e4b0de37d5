"""``--target lambda`` (placeholder while being written)."""
from __future__ import annotations


class LambdaTarget:
    name = "lambda"
    summary = "Lambda"
    options = frozenset({"schedule", "s3_trigger", "store", "memory", "timeout", "architecture", "policy_arn"})
    folder = True


TARGET = LambdaTarget()
