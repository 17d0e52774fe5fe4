"""`debflow dev`: embedded Temporal + PostgreSQL + a worker, and runs that survive a restart."""

from __future__ import annotations

import asyncio
import shutil

from temporalio.client import WorkflowExecutionStatus

from models.payloads import UploadPipelineInput
from worker.connect import connect_temporal
from worker.devstack import DevStack, private_settings
from worker.postgres import world_readable_tempdir
from worker.settings import PROJECT_ROOT, Settings
from worker.temporal_dev import TemporalDevConfig
from workflows import search_attributes as sa
from workflows.upload_pipeline import UploadPipelineWorkflow


def test_search_attributes_in_yaml_match_the_workflow_code() -> None:
    config = TemporalDevConfig.load(PROJECT_ROOT / "temporal-dev.yaml")
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "TEXT": "Text", "INT": "Int"}
    assert config.search_attributes == {k.name: kinds[k.indexed_value_type.name] for k in sa.ALL}


def test_dev_stack_starts_and_runs_survive_a_restart() -> None:
    state = world_readable_tempdir("debflow-test-dev-")
    settings = private_settings(state)
    workflow_id = "parked-run"
    try:
        stack = DevStack(settings, workers=1, say=lambda _: None)
        stack.start()
        try:
            assert settings.dev_stack()["database_url"] == stack.database_url
            assert all(p.poll() is None for p in stack.worker_processes)
            asyncio.run(_start_parked_run(stack, workflow_id))
        finally:
            stack.stop()
        assert not settings.stack_file.exists()

        again = DevStack(settings, workers=0, say=lambda _: None)
        again.start()
        try:
            status = asyncio.run(_status(again, workflow_id))
        finally:
            again.stop()
        assert status == WorkflowExecutionStatus.RUNNING
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def _start_parked_run(stack: DevStack, workflow_id: str) -> None:
    """A run on a queue nobody polls stays open until the server forgets it."""
    client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    await client.start_workflow(
        UploadPipelineWorkflow.run,
        UploadPipelineInput(upload_artifact_id=1),
        id=workflow_id,
        task_queue="nobody-polls-this",
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.PACKAGE, "parked")]),
    )


async def _status(stack: DevStack, workflow_id: str) -> WorkflowExecutionStatus | None:
    client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
    found = [w.id async for w in client.list_workflows('DebflowPackage="parked"')]
    assert found == [workflow_id]
    return (await client.get_workflow_handle(workflow_id).describe()).status


async def test_search_attributes_missing_from_an_older_database_are_added(settings: Settings) -> None:
    """A dev server whose database predates some search attributes gets them when `debflow dev` starts."""
    from temporalio.testing import WorkflowEnvironment

    from worker.temporal_dev import temporal_binary

    older = [k for k in sa.ALL if k is not sa.REGRESSIONS]  # as a database made before campaigns
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=older
    )
    try:
        stack = DevStack(settings)
        stack.temporal_address = env.client.service_client.config.target_host
        stack.namespace = env.client.namespace
        assert await stack._ensure_search_attributes() == [sa.REGRESSIONS.name]
        assert await stack._ensure_search_attributes() == []  # nothing left to add
    finally:
        await env.shutdown()
