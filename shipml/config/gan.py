"""The image-generation sections of shipml.yaml: the GAN (`model: {arch: dcgan}`) and its judge (`evaluate.judge`).

Kept beside schema.py (which imports them) so that file stays about one screen per family.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shipml.config.base import Section as _Section

__all__ = ["GANConfig", "JudgeConfig"]


class GANConfig(_Section):
    """A DCGAN: a transposed-conv generator with batch-norm and a conv discriminator, optionally conditioned on
    the class (the generator takes a class embedding, the discriminator a projection term). train.lr is the
    generator's learning rate; the discriminator's is train.lr x d_lr_ratio (TTUR). Adam betas are fixed at
    (beta1, 0.999) for both networks."""

    arch: Literal["dcgan"] = "dcgan"
    z_dim: int = Field(64, ge=2, le=1024, description="Length of the noise vector the generator starts from.")
    width: int = Field(32, ge=4, le=512, description="Channels of the generator's last and the discriminator's first "
                       "layer; doubled per resolution step (a 28x28 image has two).")
    conditional: bool = Field(True, description="Condition both networks on the class: `shipml generate --class`. "
                              "Needs two or more classes in the data.")
    class_norm: bool = Field(False, description="Conditional generator only: every batch-norm of the generator "
                             "takes its scale and shift from the class (conditional batch-norm, as in BigGAN), not "
                             "only the input.")
    spectral_norm: bool = Field(False, description="Spectral normalisation on every discriminator layer (then the "
                                "discriminator has no batch-norm); false: the classic DCGAN discriminator with "
                                "batch-norm (measured better on mnist5k, docs/generation.md).")
    loss: Literal["hinge", "non-saturating"] = Field(
        "non-saturating", description="Adversarial loss: the non-saturating log loss of Goodfellow et al. 2014, or "
        "hinge (Miyato et al. 2018).")
    diff_augment: bool = Field(False, description="DiffAugment (Zhao et al. 2020): the same random translation and "
                               "cutout applied to real and generated images before the discriminator. With a few "
                               "thousand images the discriminator otherwise memorises them and the generator "
                               "collapses to a few images per class.")
    mode_seeking: float = Field(0.5, ge=0, le=100, description="Weight of the mode-seeking term (Mao et al. 2019): "
                                "the generator is rewarded for drawing images of one class that differ as much as "
                                "their noise vectors do, against collapse to a few images per class; 0 = off.")
    minibatch_std: bool = Field(False, description="The discriminator's last convolution also sees the spread of its "
                                "features across groups of 4 images (Karras et al. 2018), so a generator drawing "
                                "too similar images is caught.")
    class_loss: float = Field(0.4, ge=0, le=100, description="Conditional model only (0 otherwise): weight of an "
                              "auxiliary classification loss (AC-GAN, Odena et al. 2017). The discriminator also "
                              "learns to classify the real images, and the generator is rewarded when its images "
                              "are classified as the class it was asked for: fewer ambiguous samples; 0 = off.")
    r1: float = Field(0.2, ge=0, le=1000, description="Weight gamma of the R1 penalty (Mescheder et al. 2018): the "
                      "discriminator also pays gamma / 2 x the squared gradient of its score on real images, so it "
                      "cannot carve sharp edges around the training images that the generator then crowds into "
                      "(fewer kinds of sample, lower recall); 0 = off.")
    r1_every: int = Field(4, ge=1, le=64, description="Compute the R1 penalty every N discriminator steps, weighted "
                          "x N (lazy regularisation, Karras et al. 2020): the extra backward pass costs ~40% of a step "
                          "when taken every step.")
    d_lr_ratio: float = Field(4.0, gt=0, le=100, description="Discriminator learning rate / generator learning rate "
                              "(TTUR, Heusel et al. 2017); 1 = one learning rate for both.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 of both networks (0.5 as in the DCGAN recipe; 0.0 "
                         "is usual with spectral norm and hinge loss).")
    ema: float | None = Field(0.999, ge=0, lt=1, description="Decay of an exponential moving average of the "
                              "generator weights, which is what is sampled, judged and exported; null = no average "
                              "(the last generator). Warmed up: step t uses min(ema, (1 + t) / (10 + t)), which "
                              "reaches 0.999 only after 8,991 steps, so in shorter runs a larger value changes "
                              "nothing.")
    sample_scale: float = Field(1.12, ge=0.5, le=2, description="Standard deviation of the noise the moving "
                                "average is sampled with (what is judged, generated and exported); the trained "
                                "generator always sees 1. Above 1 draws more varied, slightly less typical samples "
                                "(higher recall, lower precision), below 1 the reverse (the truncation trick, Brock "
                                "et al. 2019). Needs model.ema (1 without it).")
    grid: int = Field(8, ge=1, le=32, description="Fixed-noise samples per class in the grid saved each epoch "
                      "(samples/epoch-NNN.png in the run directory, shown in the report).")

    @model_validator(mode="after")
    def _check_combinations(self) -> GANConfig:
        if self.class_norm and not self.conditional:
            raise ValueError("model.class_norm: true takes the generator's batch-norm scale and shift from the class, "
                             "so it needs model.conditional: true; set one of them the other way")
        # the defaults of class_loss and sample_scale step aside (0, 1) where they mean nothing; set by hand they
        # are refused there
        given = self.model_fields_set
        if self.sample_scale != 1.0 and self.ema is None:
            if "sample_scale" in given:
                raise ValueError("model.sample_scale scales the noise of the moving average, and model.ema is null; "
                                 "set an ema (0.999) or sample_scale: 1")
            object.__setattr__(self, "sample_scale", 1.0)
        if self.class_loss and not self.conditional:
            if "class_loss" in given:
                raise ValueError("model.class_loss rewards samples classified as the requested class, so it needs "
                                 "model.conditional: true; set class_loss: 0 or conditional: true")
            object.__setattr__(self, "class_loss", 0.0)
        return self


class JudgeConfig(_Section):
    """How a generation run is judged: a classifier trained by shipml on the same training split (no Inception
    weights are available offline), whose feature space holds FID and k-NN precision/recall and whose decisions
    give the requested-class share and per-class coverage (docs/generation.md)."""

    run: str | None = Field(None, description="A finished image-classification run on the same images to judge with "
                            "(its test accuracy goes on record); null = train one into <run>/judge/.")
    epochs: int = Field(15, ge=1, description="Epochs of the judge trained when `run` is null (the image "
                        "classification recipe: 99.6% test accuracy on mnist5k).")
    samples: int | None = Field(None, ge=20, description="Real images in each half (and generated images compared "
                                "with them); null = half the training split, at most 5000.")
    k: int = Field(3, ge=1, le=50, description="Neighbours of the k-NN manifold of precision and recall "
                   "(Kynkäänniemi et al. 2019).")
