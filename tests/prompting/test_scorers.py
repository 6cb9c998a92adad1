"""The scorer family: the judge score and the personality-conditioned evaluators behind one protocol."""
import numpy as np
import pytest

from market.errors import UserError
from provisioning.backend.scenes.render import render, to_model_space
from provisioning.backend.scenes.world import ATTRIBUTES, VOCABULARY, SceneDescription
from provisioning.denoising.evaluators import GA1, GA2, BigFiveEvaluator, LanguageModelEvaluator, ScriptedLanguageModel
from provisioning.prompting.requests import (EvaluatorScorer, JudgeScorer, Request, Scorer, make_scorer, receive)

WANT = SceneDescription(scene="grassland", object="ball", colour="red", count="one", size="large",
                        position="centre", lighting="day", degradation="none")
WRONG = SceneDescription(scene="city", object="house", colour="blue", count="three", size="small",
                         position="left", lighting="night", degradation="none")
REQUEST = Request("A grassland, with a ball", "A grassland in daylight, with a red ball")


@pytest.fixture(scope="module")
def judge():
    import torch

    from provisioning.backend.scenes.judge import load_judge

    torch.set_num_threads(1)
    return load_judge("cpu")


@pytest.fixture(scope="module")
def images():
    return to_model_space(np.stack([render(WANT, v) for v in range(4)] + [render(WRONG, v) for v in range(4)]))


def test_judge_score_equals_its_formula_on_the_raw_judge_outputs(judge, images):
    import torch

    received = receive(images, 0.02, np.random.default_rng(3))
    with torch.inference_mode():
        probs = [torch.softmax(o.float(), 1).numpy() for o in judge.net(torch.as_tensor(received))]
    wanted = REQUEST.intent_attributes()
    match = np.mean([probs[ATTRIBUTES.index(a)][:, VOCABULARY[a].index(v)] for a, v in wanted.items()], axis=0)
    degradation = 1.0 - probs[ATTRIBUTES.index("degradation")][:, 0]
    expected = 10.0 * match * (1.0 - 0.5 * degradation)
    assert np.allclose(JudgeScorer(judge).score(received, [REQUEST] * 8), expected, atol=1e-5)


@pytest.mark.parametrize("spec", ["judge", "big-five:GA1", "big-five:GA2", "big-five:0.5,0.5,0.5,0.5,0.5"])
def test_every_scorer_follows_the_protocol_and_prefers_the_intended_image(judge, images, spec):
    scorer = make_scorer(spec, judge)
    assert isinstance(scorer, Scorer) and scorer.name.startswith(spec.split(":")[0])
    seeds = list(range(8))
    scores = scorer.score(images, [REQUEST] * 8, seeds)
    assert scores.shape == (8,) and np.all((scores >= 0) & (scores <= 10))
    assert scores[:4].mean() > scores[4:].mean() + 1.0
    assert np.array_equal(scores, scorer.score(images, [REQUEST] * 8, seeds))  # same seeds, same scores
    noisy = scorer.score(receive(images[:4], 0.1, np.random.default_rng(0)), [REQUEST] * 4, seeds[:4])
    assert noisy.mean() < scores[:4].mean()


def test_evaluator_scorer_is_ten_times_the_evaluators_qoe(judge, images):
    from provisioning.denoising.evaluators import measure_properties

    scorer = EvaluatorScorer(BigFiveEvaluator(GA2), judge, label="GA2")
    assert scorer.name == "big-five:GA2"
    props = measure_properties(judge, images, [REQUEST.intent] * 8, [None] * 8)
    qoe = BigFiveEvaluator(GA2).qoe(props, images, [REQUEST.intent] * 8, [None] * 8, range(8))
    assert np.allclose(scorer.score(images, [REQUEST] * 8, range(8)), 10 * qoe)
    # personalities differ; without seeds the draw is seeded by the image bytes (deterministic)
    assert not np.allclose(make_scorer("big-five:GA1", judge).score(images, [REQUEST] * 8, range(8)),
                           scorer.score(images, [REQUEST] * 8, range(8)))
    assert np.array_equal(scorer.score(images, [REQUEST] * 8), scorer.score(images, [REQUEST] * 8))


def test_a_users_language_model_plugs_in_through_the_evaluator(judge, images):
    model = ScriptedLanguageModel()
    scorer = EvaluatorScorer(LanguageModelEvaluator(GA1, model), judge)
    scores = scorer.score(images[:2], [REQUEST] * 2, [0, 1])
    assert len(model.requests) == 2 and REQUEST.intent in model.requests[0] and "Openness: 0.10" in model.requests[0]
    assert np.all((scores >= 0) & (scores <= 10))


@pytest.mark.parametrize("spec", ["big-five", "big-five:GA9", "big-five:1,2,3", "big-five:0.1,0.2,0.3,0.4,1.5",
                                  "oracle:GA1"])
def test_bad_scorer_specs_are_user_errors(judge, spec):
    with pytest.raises(UserError):
        make_scorer(spec, judge)
