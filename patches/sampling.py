"""Run a custom sampling loop through ComfyUI's sampler, so the MODEL's CFG, conditioning, hooks and
wrappers apply as in KSampler."""

import comfy.sample
import comfy.samplers
import torch


def sample_from_clean(model, loop, sigmas, cfg, positive, negative, samples, seed=0):
    """`loop(model_k, x, sigmas, extra_args)` run as a sampler on LATENT `samples` with zero noise,
    so `x` is the clean latent in the model's space and `model_k(x, sigma, **extra_args)` the
    CFG-guided denoised prediction. Returns the loop's result as LATENT samples."""

    def sampler_function(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        return loop(model_k, x, sigmas, extra_args or {})

    return comfy.sample.sample_custom(
        model,
        torch.zeros_like(samples),
        cfg,
        comfy.samplers.KSAMPLER(sampler_function),
        sigmas,
        positive,
        negative,
        samples,
        disable_pbar=True,
        seed=seed,
    )
