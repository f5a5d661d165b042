"""The trunk / member split of the classifier reproduces the encoder, and masking removes labels."""

from __future__ import annotations

import numpy as np
import torch

from edurank.classifier.model import Ensemble, Member, MemberConfig, masked_log_softmax
from edurank.encoders import load_hf_encoder
from edurank.layers import Trunk, additive_mask


def test_trunk_then_member_layers_equal_the_whole_encoder() -> None:
    encoder, tokenizer = load_hf_encoder(None)
    encoder.eval()
    features = tokenizer(["Answer: 5 (incorrect).\nExplanation: you add one more", "short"], padding=True,
                         return_tensors="pt")
    with torch.no_grad():
        whole = encoder(**features).last_hidden_state
        member = Member(encoder, MemberConfig(labels=3, split=4)).eval()
        hidden = Trunk(encoder, 4)(features["input_ids"], features["attention_mask"])
        mask = additive_mask(features["attention_mask"], hidden.dtype)
        for layer in member.layers:
            hidden = layer(hidden, mask)
    real = features["attention_mask"].bool()
    assert torch.allclose(whole[real], hidden[real], atol=1e-5)


def test_masked_softmax_gives_disallowed_labels_nothing() -> None:
    logits = torch.tensor([[5.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    allowed = torch.tensor([[False, True, True], [False, False, False]])
    probabilities = masked_log_softmax(logits, allowed).exp()
    assert probabilities[0, 0] == 0 and torch.isclose(probabilities[0].sum(), torch.tensor(1.0))
    assert torch.allclose(probabilities[1], torch.full((3,), 1 / 3))  # nothing allowed: every label stays


def test_ensemble_averages_its_members_probabilities() -> None:
    encoder, tokenizer = load_hf_encoder(None)
    members = [Member(encoder, MemberConfig(labels=4, split=5, seed=s)).eval() for s in (1, 2)]
    torch.nn.init.normal_(members[1].head.weight, std=1.0)
    allowed = np.array([[True, True, False, True]])
    ensemble = Ensemble(encoder, Trunk(encoder, 5), tokenizer, members, max_length=32)
    features = ensemble.tokenize(["Answer: 4 (correct).\nExplanation: two and two"])
    together = ensemble.probabilities(features, allowed)
    alone = [Ensemble(encoder, ensemble.trunk, tokenizer, [m], 32).probabilities(features, allowed) for m in members]
    assert np.allclose(together, (alone[0] + alone[1]) / 2, atol=1e-6)
    assert together[0, 2] == 0 and np.isclose(together.sum(), 1.0)


def test_layer_dropout_is_off_by_default_and_settable() -> None:
    encoder, _ = load_hf_encoder(None)
    for rate in (0.0, 0.2):
        member = Member(encoder, MemberConfig(labels=2, split=4, layer_dropout=rate))
        rates = {m.p for m in member.layers.modules() if isinstance(m, torch.nn.Dropout)}
        assert rates == {rate}
