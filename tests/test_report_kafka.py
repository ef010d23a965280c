"""`nudge report` reads the decision and outcome topics (outputs set to "kafka") to their
end, counting the lines an at-least-once topic repeated once."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from nudge.app.report import format_text, from_config
from nudge.core.config import Config
from tests.broker import Broker
from tests.test_report import _lines

pytestmark = pytest.mark.broker


def test_report_from_topics_counts_repeated_lines_once(broker: Broker) -> None:
    decisions = broker.create_topic("report-decisions", partitions=2)
    outcomes = broker.create_topic("report-outcomes", partitions=3)
    d, o = _lines(120, 12, 120, 30, 50, 2)
    broker.produce(decisions, [(x["customer_id"].encode(), orjson.dumps(x)) for x in d])
    # a resumed flow repeats what it wrote after its last snapshot
    broker.produce(outcomes, [(x["customer_id"].encode(), orjson.dumps(x)) for x in o + o[:40]])
    base = Config()
    cfg = dataclasses.replace(
        base, kafka=dataclasses.replace(base.kafka, brokers=(broker.bootstrap,),
                                        decisions_topic=decisions, outcomes_topic=outcomes),
        outputs=dataclasses.replace(base.outputs, decisions="kafka", outcomes="kafka"))
    r = from_config(cfg)
    (st,) = r.journeys[0].stages
    assert (st.arms["control"].settled, st.arms["control"].converted) == (120, 12)
    assert (st.arms["urgency"].settled, st.arms["urgency"].converted) == (120, 30)
    assert (st.arms["holdout"].settled, st.arms["holdout"].converted) == (50, 2)
    assert "urgency vs control (120 vs 120): 25.0% vs 10.0%" in format_text(r)
