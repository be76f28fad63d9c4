"""Action members hash by identity (issue 12): the engine counts every packet in two Counters keyed
by Action, and Enum's own __hash__ is a Python-level call (8% of the censor under flow churn)."""

from __future__ import annotations

import pickle
from collections import Counter

from testbed.core.verdict import Action


def test_actions_hash_by_identity_and_stay_usable_as_keys() -> None:
    for a in Action:
        assert hash(a) == object.__hash__(a)
        assert Action(a.value) is a and pickle.loads(pickle.dumps(a)) is a
    c: Counter[Action] = Counter()
    for a in [Action.ACCEPT, Action.DROP, Action.ACCEPT, Action(Action.HOLD.value)]:
        c[a] += 1
    assert c == {Action.ACCEPT: 2, Action.DROP: 1, Action.HOLD: 1}
    assert {a.value: n for a, n in c.items()} == {"accept": 2, "drop": 1, "hold": 1}
    assert len(Action) == 4  # the __hash__ assignment is not a member
