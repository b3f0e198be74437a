"""The noise schedules of the refiner and the baseline, as ``diffusers`` schedulers: DPM-Solver++ to sample (a
pipeline builds one and owns it), DDPM to noise training images, and what the UNet learns to predict."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler


def make_scheduler(config) -> DPMSolverMultistepScheduler:
    """The sampler: DPM-Solver++ over the model's noise schedule."""
    return DPMSolverMultistepScheduler(num_train_timesteps=config.num_train_timesteps,
                                       beta_schedule=config.beta_schedule, prediction_type=config.prediction_type,
                                       algorithm_type="dpmsolver++")


def make_training_scheduler(config) -> DDPMScheduler:
    """The same noise schedule as ``make_scheduler``, as the DDPM scheduler that noises training images and
    gives v (diffusers' solvers do not)."""
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                         prediction_type=config.prediction_type)


def diffusion_target(scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor,
                     t: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict: the noise, or v (Salimans & Ho 2022)."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    return scheduler.get_velocity(clean, noise, t)
