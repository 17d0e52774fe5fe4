"""Expiry: prune QA results, delete old removed items, expired artifacts and orphan blobs, in batches.

Started by the `debflow-expiry` schedule (overlap policy skip: one run at a time). Each step is one
short activity transaction; the run's clock is fixed at its start, so a long run never chases rows that
expired after it began.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.expiry_payloads import (
        BlobSweepInput,
        BlobSweepResult,
        ExpiryBatchInput,
        ExpiryBatchResult,
        ExpiryInput,
        ExpiryPhase,
        ExpiryResult,
        SyncWorkflowsInput,
        SyncWorkflowsResult,
    )
    from models.vocabulary import ActivityName
    from workflows.policies import DB_RETRY

BATCH_TIMEOUT = timedelta(minutes=5)
# Runs recorded before debci jobs existed went from artifacts straight to blobs.
DEBCI_JOBS_PATCH = "expiry-debci-jobs"
# The 256 two-hex-digit directories of the store, swept 16 per activity.
PREFIX_GROUPS = 16
# Activities per run before continuing as new, far below Temporal's history limits.
STEPS_PER_RUN = 1000

BATCH_ACTIVITIES = {
    ExpiryPhase.QA_RESULTS: ActivityName.PRUNE_QA_RESULTS,
    ExpiryPhase.ITEMS: ActivityName.EXPIRE_COLLECTION_ITEMS,
    ExpiryPhase.ARTIFACTS: ActivityName.EXPIRE_ARTIFACTS,
    ExpiryPhase.DEBCI_JOBS: ActivityName.EXPIRE_DEBCI_JOBS,
}
NEXT_PHASE = {
    ExpiryPhase.WORKFLOWS: ExpiryPhase.QA_RESULTS,
    ExpiryPhase.QA_RESULTS: ExpiryPhase.ITEMS,
    ExpiryPhase.ITEMS: ExpiryPhase.ARTIFACTS,
    ExpiryPhase.ARTIFACTS: ExpiryPhase.BLOBS,
    ExpiryPhase.DEBCI_JOBS: ExpiryPhase.BLOBS,
    ExpiryPhase.BLOBS: ExpiryPhase.DONE,
}


@workflow.defn(name="Expiry")
class ExpiryWorkflow:
    """One expiry run: running workflows, QA results, collection items, artifacts, then blobs."""

    @workflow.run
    async def run(self, params: ExpiryInput) -> ExpiryResult:
        now = params.now or workflow.now()
        done = params.done.model_copy()
        phase, cursor = params.phase, list(params.cursor)
        steps = 0
        while phase is not ExpiryPhase.DONE:
            if steps >= STEPS_PER_RUN or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    ExpiryInput(policy=params.policy, now=now, phase=phase, cursor=cursor, done=done)
                )
            steps += 1
            done.batches += 1
            if phase is ExpiryPhase.WORKFLOWS:
                synced = await workflow.execute_activity(
                    ActivityName.SYNC_RUNNING_WORKFLOWS,
                    SyncWorkflowsInput(policy=params.policy),
                    result_type=SyncWorkflowsResult,
                    start_to_close_timeout=BATCH_TIMEOUT,
                    heartbeat_timeout=timedelta(minutes=1),
                    retry_policy=DB_RETRY,
                )
                done.running_workflows = synced.running
                phase, cursor = NEXT_PHASE[phase], []
            elif phase is ExpiryPhase.BLOBS:
                group = int(cursor[0]) if cursor else 0
                swept = await workflow.execute_activity(
                    ActivityName.COLLECT_ORPHAN_BLOBS,
                    BlobSweepInput(
                        prefixes=[
                            f"{n:02x}" for n in range(group * PREFIX_GROUPS, (group + 1) * PREFIX_GROUPS)
                        ],
                        grace_s=params.policy.orphan_blob_grace_s,
                        clean_tmp=group == 0,
                        policy=params.policy,
                    ),
                    result_type=BlobSweepResult,
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=DB_RETRY,
                )
                done.files_deleted += swept.files_deleted
                done.blobs_removed += swept.blobs_removed
                group += 1
                phase, cursor = (
                    (NEXT_PHASE[phase], []) if group >= 256 // PREFIX_GROUPS else (phase, [str(group)])
                )
            else:
                batch = await workflow.execute_activity(
                    BATCH_ACTIVITIES[phase],
                    ExpiryBatchInput(
                        now=now, policy=params.policy, cursor=cursor, run_id=workflow.info().workflow_id
                    ),
                    result_type=ExpiryBatchResult,
                    start_to_close_timeout=BATCH_TIMEOUT,
                    retry_policy=DB_RETRY,
                )
                self._count(done, phase, batch)
                if not batch.done:
                    cursor = batch.cursor
                elif phase is ExpiryPhase.ARTIFACTS and workflow.patched(DEBCI_JOBS_PATCH):
                    phase, cursor = ExpiryPhase.DEBCI_JOBS, []
                else:
                    phase, cursor = NEXT_PHASE[phase], []
        workflow.logger.info("expiry done: %s", done.model_dump())
        return done

    @staticmethod
    def _count(done: ExpiryResult, phase: ExpiryPhase, batch: ExpiryBatchResult) -> None:
        if phase is ExpiryPhase.QA_RESULTS:
            done.qa_results_removed += batch.changed
        elif phase is ExpiryPhase.ITEMS:
            done.items_deleted += batch.changed
        elif phase is ExpiryPhase.DEBCI_JOBS:
            done.debci_jobs_deleted += batch.changed
        else:
            done.artifacts_deleted += batch.changed
            done.artifacts_kept += batch.kept
            done.files_deleted += batch.files_deleted
            done.blobs_removed += batch.blobs_removed
