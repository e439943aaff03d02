"""InST's stochastic inversion on ComfyUI's sampler (docs/design/inst.md 3.2-3.3).

InST does not start from random noise: it noises the content latent to t = strength * 1000, lets
the UNet predict that noise under the style prompt (no CFG), and rebuilds the noisy latent from the
prediction, which keeps the content's structure. DDIM then denoises the last int(strength * steps)
steps of its 50-step uniform schedule, starting at the first of those steps' level (t = 681 for
0.7), as published, although the latent was built for t = 700.

In ComfyUI's sigma space x = z0 + sigma * eps, and sqrt(alpha_bar) = 1 / sqrt(1 + sigma^2), so
InST's start latent sqrt(ab_inv) (z0 + sigma_inv eps_hat) / sqrt(ab_start) is
(z0 + sigma_inv eps_hat) * sqrt((1 + sigma_start^2) / (1 + sigma_inv^2)). KSamplerAdvanced with
noise disabled from `start_at_step` of the same schedule then runs InST's DDIM steps.
"""

import comfy.sample
import comfy.samplers
import torch

from .model_requirements import require_ddpm
from .sampling import sample_from_clean


def inversion_schedule(sampling, steps, strength, scheduler="ddim_uniform"):
    """(sigma_inv, sigma_start, start_at_step) for `steps` steps of `scheduler`. ComfyUI's
    ddim_uniform has more than `steps` levels when `steps` does not divide 1000, as LDM's DDIM
    has, so the start step is counted from the end of the schedule."""
    denoised_steps = int(strength * steps)
    if denoised_steps < 1:
        raise ValueError(
            f"strength {strength} x {steps} steps leaves no step to denoise: raise the strength or the steps "
            "(InST uses 0.7 and 50)"
        )
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).float().cpu()
    start = len(sigmas) - 1 - denoised_steps
    timestep = torch.tensor(float(int(strength * len(sampling.sigmas))))
    return float(sampling.sigma(timestep)), float(sigmas[start]), start


def stochastic_inversion(model, positive, latent, strength, steps, seed, scheduler="ddim_uniform"):
    """The noisy start latent for KSamplerAdvanced (LATENT samples) and its start_at_step. The noise
    comes from `seed` as KSampler draws it; the UNet runs once per image, under `positive`."""
    sampling = model.get_model_object("model_sampling")
    require_ddpm(sampling, "InST Stochastic Inversion")
    sigma_inv, sigma_start, start = inversion_schedule(sampling, steps, strength, scheduler)
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    rescale = ((1 + sigma_start**2) / (1 + sigma_inv**2)) ** 0.5

    def invert(model_k, z0, sigmas, extra_args):
        sigma = sigmas[0]
        noisy = z0 + sigma * noise.to(z0)
        predicted = (noisy - model_k(noisy, sigma * z0.new_ones([z0.shape[0]]), **extra_args)) / sigma
        return (z0 + sigma * predicted) * rescale

    # cfg 1 evaluates `positive` only
    started = sample_from_clean(model, invert, torch.tensor([sigma_inv, 0.0]), 1.0, positive, positive, samples, seed)
    return started, start
