"""Every case of scripts/api_faults.py behaves as promised: the API refuses what it cannot
measure with one line naming the argument, and takes what the field accepts."""

import pytest
import torch

CASES = 57  # the battery's size: a case dropped from it fails here


@pytest.fixture(scope="module")
def battery(load_script):
    return load_script("scripts/api_faults.py")


def test_the_battery_keeps_its_cases(battery):
    names = [case.name for case in battery.cases()]
    assert len(names) == CASES and len(set(names)) == CASES


@pytest.mark.parametrize("index", range(CASES))
def test_case_behaves_as_promised(battery, index):
    case = battery.cases()[index]
    kind, detail = battery.outcome(case)
    assert kind == "ok", f"{case.name}: {kind}: {detail}"


def test_the_battery_tells_a_silent_wrong_from_a_refusal(battery):
    """The classifier itself: a call that should fail but runs is 'silently wrong', an
    exception of torch's is a 'traceback', a refusal without the argument's name 'unclear'."""
    from sparta.errors import SpartaError

    def refuse():
        raise SpartaError("something is off")

    def crash():
        raise IndexError("Target 17 is out of bounds.")

    assert battery.outcome(battery.Case("runs", lambda: 1, ("labels",)))[0] == "silently wrong"
    assert battery.outcome(battery.Case("crashes", crash, ("labels",)))[0] == "traceback"
    assert battery.outcome(battery.Case("vague", refuse, ("labels",)))[0] == "unclear"
    assert battery.outcome(battery.Case("wrong", lambda: 1, None, check=lambda v: v == 2))[0] == "silently wrong"


def test_the_gate_checks_once_per_batch_not_per_step(monkeypatch):
    """PGD-10 on one batch looks at the images' range once and the labels' range once."""
    import sparta

    calls = {"aminmax": 0}
    real = torch.aminmax

    def counting(*args, **kwargs):
        calls["aminmax"] += 1
        return real(*args, **kwargs)

    model = sparta.build_model("smallcnn", "relu", num_classes=10, in_channels=1, image_size=16).eval()
    x, y = torch.rand(4, 1, 16, 16), torch.randint(10, (4,))
    monkeypatch.setattr(torch, "aminmax", counting)
    sparta.PGD(0.1, steps=10)(model, x, y)
    assert calls["aminmax"] == 2
