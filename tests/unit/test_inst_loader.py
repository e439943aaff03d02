"""Reading style-token files (docs/design/inst.md 1): InST's pickled network through the restricted
unpickler, ArtBank's variant, the usual textual-inversion formats; anything that would run code or
is not a style token is refused with a sentence, and nothing in a refused file runs (empty, cut and
other slots' files: test_broken_files.py)."""

import pickle
from collections import OrderedDict

import pytest
import torch

from fixtures import inst
from fixtures.payload import Payload
from style_suite.loaders.inst import load_style_file
from style_suite.loaders.weights import ModelFileError


def refused(path):
    with pytest.raises(ModelFileError) as error:
        load_style_file(str(path))
    return str(error.value)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_an_inst_file_loads_every_tensor_of_its_network(tmp_path, legacy):
    original = inst.write_inst(tmp_path / "embeddings.pt", seed=3, legacy=legacy)
    loaded = load_style_file(str(tmp_path / "embeddings.pt"))
    assert loaded.kind == "InST" and loaded.vectors is None
    expected = original.state_dict()
    state = loaded.network.state_dict()
    assert set(state) == set(expected) and len(state) == 12
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert not loaded.network.training


def test_the_network_computes_what_insts_module_computes_with_dropout_off(tmp_path):
    """Any sequence length: the full attention maths, not only the one-token shortcut."""
    original = inst.write_inst(tmp_path / "embeddings.pt", seed=4, train=True)  # saved in train mode
    network = load_style_file(str(tmp_path / "embeddings.pt")).network
    x = torch.randn(2, 5, 768, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(network(x), original.eval()(x, x), atol=1e-5, rtol=1e-5)


def test_the_token_is_the_closed_form_of_the_live_weights(tmp_path):
    """One input token: each softmax is over one key, so v = W_net (W_out2 W_v2 e + b_out2) + b_net."""
    inst.write_inst(tmp_path / "embeddings.pt", seed=5)
    network = load_style_file(str(tmp_path / "embeddings.pt")).network
    with inst.ldm_classes():
        state = torch.load(tmp_path / "embeddings.pt", weights_only=False)["attention"].state_dict()
    e = torch.nn.functional.normalize(torch.randn(768, generator=torch.Generator().manual_seed(1)), dim=0)
    hidden = state["attn2.to_out.0.weight"] @ (state["attn2.to_v.weight"] @ e) + state["attn2.to_out.0.bias"]
    expected = state["net.1.weight"] @ hidden + state["net.1.bias"]
    with torch.no_grad():
        token = network.token(e)
    assert token.shape == (1, 768)
    torch.testing.assert_close(token[0], expected, atol=1e-5, rtol=1e-5)


def test_artbanks_file_gives_the_network_applied_to_its_learned_vector(tmp_path):
    original, vector = inst.write_artbank(tmp_path / "embeddings.pt", seed=6)
    loaded = load_style_file(str(tmp_path / "embeddings.pt"))
    assert loaded.network is None and "ArtBank" in loaded.kind
    with torch.no_grad():
        expected = original.eval()(vector).reshape(1, 768)
    torch.testing.assert_close(loaded.vectors, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "write", "count"),
    [
        ("a1111.pt", inst.write_a1111, 2),
        ("rinongal.pt", inst.write_rinongal, 1),
        ("learned_embeds.bin", inst.write_learned_embeds, 1),
        ("learned_embeds.safetensors", inst.write_learned_embeds, 3),
        ("kohya.safetensors", lambda path, e: inst.write_safetensors(path, emb_params=e), 4),
        (
            "sdxl.safetensors",
            lambda path, e: inst.write_safetensors(path, clip_l=e, clip_g=torch.zeros(len(e), 1280)),
            2,
        ),
    ],
)
def test_textual_inversion_files_give_their_vectors(tmp_path, name, write, count):
    embedding = inst.vectors(count, seed=count)
    write(tmp_path / name, embedding.squeeze(0) if name == "learned_embeds.bin" else embedding)
    loaded = load_style_file(str(tmp_path / name))
    assert loaded.network is None and loaded.kind.startswith("textual inversion")
    assert torch.equal(loaded.vectors, embedding)


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["top level", "inside the InST dictionary", "inside the network"])
def test_a_file_carrying_a_payload_is_refused_and_nothing_in_it_runs(tmp_path, where):
    marker = tmp_path / "ran"
    path = tmp_path / "embeddings.pt"
    if where == "top level":
        torch.save(Payload(str(marker)), path)
    elif where == "inside the InST dictionary":
        inst.write_inst(path, extra_entry=Payload(str(marker)))
    else:
        network = inst.inst_network()
        network.attn1.hook = Payload(str(marker))
        with inst.ldm_classes():
            torch.save({"string_to_token": {"*": 265}, "attention": network}, path)
    message = refused(path)
    assert (
        "embeddings.pt was refused" in message
        and "asks for io.open" in message
        and "nothing from it was run" in message
    )
    assert not marker.exists()


def test_hooks_a_file_sets_on_its_modules_are_never_called(tmp_path):
    """A pickled module may carry hooks; reading its weights must not call them (state_dict() would)."""
    network = inst.inst_network(seed=2)
    network.attn2._state_dict_hooks[0] = OrderedDict  # an allowed global, called by state_dict()
    with inst.ldm_classes():
        torch.save({"string_to_token": {"*": 265}, "attention": network}, tmp_path / "embeddings.pt")
    loaded = load_style_file(str(tmp_path / "embeddings.pt"))
    assert torch.equal(loaded.network.net[1].bias, network.net[1].bias)


def test_a_file_asking_for_os_system_is_refused(tmp_path):
    class Command:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'ran'}",))

    with open(tmp_path / "embeddings.pt", "wb") as file:
        pickle.dump({"attention": Command()}, file)
    assert "was refused" in refused(tmp_path / "embeddings.pt")
    assert not (tmp_path / "ran").exists()


def test_a_look_alike_of_another_method_is_refused_naming_the_class(tmp_path):
    inst.write_prospect(tmp_path / "prospect.pt")
    assert "ldm.modules.embedding_manager.TransformerBlock" in refused(tmp_path / "prospect.pt")


def test_an_inst_file_with_extra_entries_is_refused_as_a_modified_method(tmp_path):
    inst.write_inst(tmp_path / "embeddings.pt", time_embed=torch.zeros(4))
    message = refused(tmp_path / "embeddings.pt")
    assert "not an InST file" in message and "time_embed" in message


def test_a_network_of_another_width_is_refused_with_the_first_mismatch(tmp_path):
    torch.manual_seed(0)
    network = inst.Attentions(dim=1280)  # LDM's BERT variant of the embedding manager
    with inst.ldm_classes():
        torch.save({"string_to_token": {"*": 265}, "attention": network}, tmp_path / "bert.pt")
    message = refused(tmp_path / "bert.pt")
    assert "is not an InST network" in message and "wrong shapes" in message


@pytest.mark.parametrize(("width", "named"), [(1024, "SD2.x"), (1280, "SDXL")])
def test_embeddings_for_other_text_encoders_are_refused_naming_them(tmp_path, width, named):
    inst.write_a1111(tmp_path / "style.pt", inst.vectors(2, width=width))
    message = refused(tmp_path / "style.pt")
    assert f"{width}-wide" in message and named in message and "768" in message


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"weights": torch.zeros(3), "bias": torch.zeros(3)}, "holds the keys weights, bias"),
        ({"string_to_param": {}}, "empty or unreadable string_to_param"),
        ([torch.zeros(768)], "holds a list"),
        ({"<style>": torch.full((768,), float("nan"))}, "NaN or infinite"),
        ({"<style>": torch.zeros(80, 768)}, "80 vectors"),
    ],
)
def test_files_that_are_not_style_tokens_are_refused_saying_why(tmp_path, content, says):
    torch.save(content, tmp_path / "style.pt")
    assert says in refused(tmp_path / "style.pt")


def test_loading_leaves_torchs_own_allowlist_unchanged(tmp_path):
    """The restricted unpickler is passed per call: afterwards torch.load still refuses module pickles."""
    inst.write_inst(tmp_path / "embeddings.pt")
    load_style_file(str(tmp_path / "embeddings.pt"))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "embeddings.pt", weights_only=True)
