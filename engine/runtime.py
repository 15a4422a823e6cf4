"""Wires one engine together: intake, rule set, outbox dispatcher, handlers and alert sender.

The daemon, the one-shot runner and the tests all build the engine here, so what is tested is
what runs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from engine.alerting import AlertSender
from engine.clock import Clock
from engine.config.load import ConfigSet
from engine.evaluate import RuleSet
from engine.guardrails import Guardrails
from engine.handlers import CrmHandlers
from engine.handlers_writeback import WritebackHandlers
from engine.intake import AlertSettings, Intake
from engine.links import LinkSigner
from engine.local_actions import LocalActions
from engine.metrics import Metrics
from engine.outbox import CONCURRENCY, Dispatcher, Handler, RetryPolicy
from engine.ports import AlertPort, AtsPort, ConsentPort, CrmPort, MailPort, NotifierPort
from engine.sequences import Sequencer
from engine.steps import StepRunner
from engine.store.store import Store


def alert_settings(config: ConfigSet) -> AlertSettings:
    from engine.config.types import parse_duration

    if config.daemon is None:
        return AlertSettings()
    alerting = config.daemon.alerting
    return AlertSettings(
        group_window=parse_duration(alerting.group_window),
        error_rate_threshold=alerting.error_rate_threshold,
        error_rate_window=parse_duration(alerting.error_rate_window),
    )


@dataclass
class Runtime:
    store: Store
    rules: RuleSet
    intake: Intake
    dispatcher: Dispatcher
    alerts: AlertSender
    steps: StepRunner

    @classmethod
    def build(
        cls,
        store: Store,
        config: ConfigSet,
        clock: Clock,
        crm: CrmPort,
        alert_targets: Sequence[AlertPort] = (),
        *,
        retry: RetryPolicy | None = None,
        alerts: AlertSettings | None = None,
        concurrency: int = CONCURRENCY,
        lease: timedelta = timedelta(minutes=2),
        rng: random.Random | None = None,
        step_batch: int = 1000,
        ats: AtsPort | None = None,
        notifier: NotifierPort | None = None,
        links: LinkSigner | None = None,
        extra_handlers: Mapping[str, Handler] | None = None,
        consent: ConsentPort | None = None,
        mail: MailPort | None = None,
        metrics: Metrics | None = None,
    ) -> Runtime:
        settings = alerts or alert_settings(config)
        rules = RuleSet.build(config, clock)
        sequencer = Sequencer(config, clock)
        guardrails = Guardrails.from_daemon(config.daemon)
        handlers = CrmHandlers(
            store, crm, config, clock, guardrails, links, consent=consent, mail=mail
        ).handlers()
        if ats is not None and notifier is not None:
            handlers.update(WritebackHandlers(ats, notifier).handlers())
        if extra_handlers:
            handlers.update(extra_handlers)  # e.g. {'http.request': HttpActionHandler(...)}
        dispatcher = Dispatcher(
            store,
            handlers,
            clock,
            retry=retry,
            alerts=settings,
            concurrency=concurrency,
            lease=lease,
            rng=rng,
            metrics=metrics,
        )
        steps = StepRunner(
            store, config, clock, LocalActions(sequencer), batch=step_batch, metrics=metrics
        )
        return cls(
            store=store,
            rules=rules,
            intake=Intake(
                store, rules, clock, settings, config=config, sequencer=sequencer, steps=steps
            ),
            dispatcher=dispatcher,
            alerts=AlertSender(store, alert_targets, clock),
            steps=steps,
        )
