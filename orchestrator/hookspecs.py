"""The plugin contract: hook specifications a plugin module may implement.

A plugin is a module registered under the entry-point group ``orchestrator``;
it implements hooks with ``@orchestrator.hookimpl``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .alerts.deliver import Sender
    from .catalog.stores import CatalogStore
    from .executor import Executor
    from .runs.store import RunStore

PROJECT = "orchestrator"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
# The specs below have a docstring for a body: pluggy calls the plugins' implementations, never
# these, hence the narrow `empty-body` ignores where None is not a valid answer.


@hookspec
def register_executors() -> list[type[Executor]]:  # type: ignore[empty-body]
    """Return the executor classes (subclasses of ``orchestrator.Executor``) this plugin provides.

    Called once, when the registry first imports the plugin: when a routine names one of its
    executors (the names it returned last time are cached), or when every executor is listed.
    The answer should depend only on the plugin's code. Importing the plugin module must stay
    cheap: import heavy libraries (boto3, database drivers) inside the tasks that need them.
    """


@hookspec(firstresult=True)
def run_store(url: str) -> RunStore | None:
    """Return a run store (an ``orchestrator.runs.RunStore``) for ``url``, or None if the URL is
    not yours.

    ``url`` comes from ``ORCHESTRATOR_STORE`` (for example ``dynamodb://table``); with no
    variable, the built-in SQLite store under the orchestrator home is used. Only plugins that
    implement this hook (or are not known yet) are imported to answer it.
    """


@hookspec(firstresult=True)
def resolve_secret(kind: str, name: str) -> Any:
    """Return the value of the secret a routine references as ``${secret.NAME}`` (``kind``
    ``"secret"``: AWS Secrets Manager, ``NAME#key`` for one key of a JSON secret) or
    ``${ssm.NAME}`` (``"ssm"``: SSM Parameter Store, decrypted), or None if the kind is not yours.

    Called when a routine is loaded to run (never by ``validate``, ``plan`` or ``generate``, which
    keep the reference); the value is masked wherever it would be shown. Raise to say why it
    cannot be read: the load fails naming the reference.
    """


@hookspec(firstresult=True)
def catalog_store(url: str) -> CatalogStore | None:
    """Return a routine-catalog store (an ``orchestrator.catalog.stores.CatalogStore``) for ``url``,
    or None if the URL is not yours.

    ``url`` is the home config's ``catalog`` or ``artifacts`` (for example
    ``s3://bucket/routines/``); folders and ``http(s)://`` are built in. Only plugins that
    implement this hook (or are not known yet) are imported to answer it.
    """


@hookspec
def aws_iam_statements(step: Any) -> list[dict[str, Any]] | None:
    """Return the IAM policy statements a deployed routine needs for ``step`` (an
    ``orchestrator.routine.load.StepSpec``) if the step's executor is yours, else None.

    Statements are dicts (``Effect``, ``Action``, ``Resource``, optional ``Condition``); ARNs may
    use ``${AWS::Partition}``, ``${AWS::Region}`` and ``${AWS::AccountId}``. ``[]`` means it needs
    none.
    A ``{"Note": "..."}`` item is not a statement: it says what could not be derived (it is shown).
    Used by ``orchestrate generate --target lambda`` for a least-privilege role; only plugins that
    implement this hook (or are not known yet) are imported to answer it.
    """


@hookspec
def generate_targets() -> list[Any]:  # type: ignore[empty-body]
    """Return more ``orchestrate generate --target`` targets (objects following
    ``orchestrator.generate.targets.Target``); ``script``, ``docker`` and ``lambda`` are built in.
    """


@hookspec
def register_notifiers() -> dict[str, Sender]:  # type: ignore[empty-body]
    """Return ``{kind: send}`` for notification kinds this plugin delivers (``sns``, say).

    ``send(target, message)`` gets an ``orchestrator.alerts.targets.NotifyTarget`` and an
    ``orchestrator.alerts.deliver.Message``; it must finish within ``target.timeout`` seconds or
    raise. It is called only when a routine's ``notify:`` block names that kind.
    """
