"""StyleAligned's reference-image mode on ComfyUI's sampler (docs/design/stylealigned.md 2.5).

- `invert`: DDIM inversion of the reference latent through the user's MODEL, CFG and conditioning,
  as a ComfyUI sampler run over the ascending noise levels; every intermediate latent is kept.
- `ReferenceRow`: a CALC_COND_BATCH wrapper that puts the reference on row 0 of the batch before
  every model evaluation (inverted mode), and checks that Batch Align patched the model.
"""

from dataclasses import dataclass

import comfy.samplers
import torch

from ..models.shared_attention import latent_at, reference_level
from .sampling import sample_from_clean
from .style_aligned import has_batch_align

WRAPPER_KEY = "style_suite.style_aligned_reference"


@dataclass(frozen=True)
class Trajectory:
    """STYLEALIGNED_TRAJECTORY: the reference latent at each noise level of its inversion, in the
    model's internal latent space. sigmas [N+1] ascending, latents [N+1, C, H, W] (latents[0] is
    the clean reference); `positive` is the prompt it was inverted with."""

    sigmas: torch.Tensor
    latents: torch.Tensor
    positive: list
    latent_format: str


def invert(model, positive, negative, latent, steps, scheduler, cfg, on_step):
    """DDIM inversion of `latent` (LATENT samples [1, C, H, W]) as published (google/style-aligned
    inversion.py): from the lowest noise level of the `steps`/`scheduler` schedule up to the
    highest, each step predicts the noise of the current latent at the next level (CFG `cfg`) and
    moves the latent there along it. `on_step(finished)` is called after each step with the steps finished so far."""
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).float().cpu()
    ascending = sigmas.flip(0)
    ascending[0] = float(sampling.sigma_min)  # the schedule ends at 0; DDIM starts from the first level
    kept = []

    def ddim_inversion(model_k, x, sigmas, extra_args):
        ones = x.new_ones([x.shape[0]])
        kept.append(x.float().cpu())
        for i in range(len(sigmas) - 1):
            low, high = sigmas[i], sigmas[i + 1]
            # the UNet gets the current latent as it is (its input scale is 1/sqrt(sigma^2 + 1))
            at_high = x * ((high**2 + 1) / (low**2 + 1)).sqrt()
            eps = (at_high - model_k(at_high, high * ones, **extra_args)) / high
            x = x + (high - low) * eps
            kept.append(x.float().cpu())
            on_step(i + 1)
        return x

    sample_from_clean(model, ddim_inversion, ascending, cfg, positive, negative, latent)
    return Trajectory(
        sigmas=ascending,
        latents=torch.cat(kept),
        positive=positive,
        latent_format=type(model.model.latent_format).__name__,
    )


class ReferenceRow:
    """CALC_COND_BATCH wrapper. With a trajectory, row 0 of the batch is replaced before every model
    evaluation by the reference at StyleAligned's offset level; without one (renoise mode, where a
    noise mask keeps row 0) it only checks the model."""

    def __init__(self, trajectory=None, offset=0):
        self.trajectory = trajectory
        self.offset = offset
        # Per sampling run (its sample_sigmas tensor): the schedule as floats and the trajectory on
        # the sampler's device, so an evaluation reads neither back from nor copies to the device.
        self._run = (None, None, None)

    def __call__(self, executor, model, conds, x_in, timestep, model_options):
        schedule = model_options.get("transformer_options", {}).get("sample_sigmas")
        if schedule is None or self._run[0] is not schedule:  # the first evaluation of a sampling run
            self._start_run(schedule, x_in, model_options)
        if self.trajectory is not None:
            x_in = self._with_reference(x_in, timestep)
        return executor(model, conds, x_in, timestep, model_options)

    def _start_run(self, schedule, x_in, model_options):
        if not has_batch_align(model_options):
            raise ValueError(
                "StyleAligned Reference Apply gives the batch its reference image, and StyleAligned Batch Align "
                "shares the reference's style with the other images: add Batch Align to this MODEL too."
            )
        latents = None
        if self.trajectory is not None:
            latents = self.trajectory.latents
            if tuple(x_in.shape[1:]) != tuple(latents.shape[1:]):
                raise ValueError(
                    f"the reference trajectory holds {tuple(latents.shape[1:])} latents but the sampler runs "
                    f"{tuple(x_in.shape[1:])}: invert the reference at the size of the image to generate"
                )
            latents = latents.to(x_in)
        self._run = (schedule, None if schedule is None else schedule.tolist(), latents)

    def _with_reference(self, x_in, timestep):
        _, levels, latents = self._run
        sigma = float(timestep[0])
        level = reference_level(levels, sigma, self.offset) if levels is not None else sigma
        x_in = x_in.clone()
        x_in[0] = latent_at(self.trajectory.sigmas, latents, level)
        return x_in

    def __deepcopy__(self, memo):
        return self  # shares the trajectory, which can be large
