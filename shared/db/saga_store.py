"""Saga runs in the database (``saga_runs`` / ``saga_steps``)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from shared.db.engine import Database
from shared.db.models import SagaRun, SagaStepRun, utcnow
from shared.sagas.definition import SagaState
from shared.sagas.runner import SagaRunRecord


class SqlSagaRunStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(
        self,
        saga: str,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None,
        state: SagaState,
        step_names: list[str],
    ) -> uuid.UUID:
        run = SagaRun(saga=saga, tenant_id=tenant_id, kb_id=kb_id, state=state, status="running")
        async with self._db.session() as session:
            session.add(run)
            await session.flush()
            for ordinal, name in enumerate(step_names):
                session.add(SagaStepRun(run_id=run.id, name=name, ordinal=ordinal))
        return run.id

    async def load(self, run_id: uuid.UUID) -> SagaRunRecord | None:
        async with self._db.session() as session:
            run = await session.get(SagaRun, run_id)
            if run is None:
                return None
            steps = (
                await session.scalars(select(SagaStepRun).where(SagaStepRun.run_id == run_id))
            ).all()
        return SagaRunRecord(
            id=run.id,
            saga=run.saga,
            status=run.status,
            state=dict(run.state),
            step_status={s.name: s.status for s in steps},
            tenant_id=run.tenant_id,
            kb_id=run.kb_id,
            error_code=run.error_code,
            error_message=run.error_message,
        )

    async def set_status(self, run_id: uuid.UUID, status: str) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(SagaRun)
                .where(SagaRun.id == run_id)
                .values(status=status, error_code=None, error_message=None, updated_at=utcnow())
            )

    async def step_started(self, run_id: uuid.UUID, step: str, attempt: int) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(SagaStepRun)
                .where(SagaStepRun.run_id == run_id, SagaStepRun.name == step)
                .values(status="running", attempts=attempt, started_at=utcnow(), error=None)
            )

    async def step_finished(
        self,
        run_id: uuid.UUID,
        step: str,
        status: str,
        state: SagaState,
        duration_ms: float | None,
        error: str | None = None,
    ) -> None:
        values: dict[str, object] = {"status": status, "finished_at": utcnow()}
        if duration_ms is not None:
            values["duration_ms"] = duration_ms
        if error is not None:
            values["error"] = error
        async with self._db.session() as session:
            await session.execute(
                update(SagaStepRun)
                .where(SagaStepRun.run_id == run_id, SagaStepRun.name == step)
                .values(**values)
            )
            await session.execute(
                update(SagaRun).where(SagaRun.id == run_id).values(state=state, updated_at=utcnow())
            )

    async def finish(
        self,
        run_id: uuid.UUID,
        status: str,
        state: SagaState,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(SagaRun)
                .where(SagaRun.id == run_id)
                .values(
                    status=status,
                    state=state,
                    error_code=error_code,
                    error_message=error_message,
                    updated_at=utcnow(),
                )
            )
