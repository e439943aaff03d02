"""StyleShot fixture files of the published size, written once per test session and shared by the
encoder, loader and converter tests (the encoder alone takes ~20 s to build)."""

import pytest

from fixtures import styleshot


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("styleshot-shared")


@pytest.fixture(scope="session")
def encoder_file(shared_folder):
    """style_aware_encoder.bin as published (fp16 CLIP tower, fp32 rest)."""
    return str(styleshot.write_encoder(shared_folder / "style_aware_encoder.bin"))


@pytest.fixture(scope="session")
def contour_file(shared_folder):
    """ip.bin as published: adapter, content-fusion encoder and a sample of the UNet copy."""
    return str(
        styleshot.write_adapter(
            shared_folder / "styleshot_contour_ip.bin", content_fusion=styleshot.content_fusion_layout()
        )
    )
