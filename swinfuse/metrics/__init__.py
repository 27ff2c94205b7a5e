"""The field's fusion metrics, computed as the CDDFuse evaluator computes them.

Reference: `utils/Evaluator.py` and `test_IVF.py` of Zhaozixiang1228/MMIF-CDDFuse (the most used Python
evaluator; scikit-image 0.19 and scikit-learn as pinned in its requirements). This is our own vectorised
numpy/scipy implementation of the same numbers (`tools/compare_evaluator.py` checks them to 1e-3):

- images are gray float32 values on 0..255: read with cv2 (3 channels), BGR->gray, rounded;
- EN: Shannon entropy in bits of the 256-level histogram; SD: population standard deviation;
  SF: sqrt(mean row diff^2 + mean column diff^2); AG: mean of sqrt((gx^2 + gy^2) / 2) with np.gradient's
  differences (central inside, one-sided at the borders);
- MI: mutual information in nats (sklearn's mutual_info_score over the distinct gray values),
  summed over the two sources; SCD: sum of the correlations of differences;
- VIF: pixel-domain VIF (four scales, MATLAB-style Gaussian windows, sigma_n^2 = 2), summed over the sources;
- Qabf: Xydeas-Petrovic edge preservation with CDDFuse's Sobel convolution (zero padding) and constants,
  including its quirk that G = gF where gA == gF;
- SSIM: scikit-image 0.19 `structural_similarity` on float32 images with no data_range, which means
  data_range = 2 (the float dtype range -1..1), a 7x7 uniform window and sample covariance; summed over
  the two sources;
- Nabf: not in the CDDFuse evaluator; B. K. Shreyamsha Kumar's modified fusion-artifacts measure as in his
  MATLAB `objective_fusion_perform_fn.m` (the NABF output), on the same 0..255 scale.

Those are the `cddfuse` convention, the default. CONVENTIONS holds the others: evaluators disagree on MI's
unit (nats or bits), on summing or averaging MI, VIF and SSIM over the two sources, and on SSIM's data range.

The modules, one topic each: conventions (names, directions, conventions), information (EN, SD, MI),
structure (VIF, SSIM, SCD), gradient (SF, AG, Qabf, Nabf), scoring (reading images, all metrics of one image,
many images in processes). Every name is importable from swinfuse.metrics, as when this was one module.
"""

from __future__ import annotations

from swinfuse.metrics.conventions import (CONVENTIONS, DEFAULT_CONVENTION, DIRECTIONS, METRIC_NAMES, Convention,
                                          get_convention)
from swinfuse.metrics.information import entropy, mutual_information, std_dev
from swinfuse.metrics.structure import MIN_SIDE, scd, ssim, vif
from swinfuse.metrics.gradient import average_gradient, nabf, qabf, spatial_frequency
from swinfuse.metrics.scoring import (compute_metrics, evaluate_files, evaluate_folder, evaluate_images,
                                      evaluate_triples, mean_record, read_gray)

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTION", "DIRECTIONS", "METRIC_NAMES", "MIN_SIDE", "average_gradient",
           "compute_metrics", "Convention", "entropy", "evaluate_files", "evaluate_folder", "evaluate_images",
           "evaluate_triples", "get_convention", "mean_record", "mutual_information", "nabf", "qabf", "read_gray",
           "scd", "spatial_frequency", "ssim", "std_dev", "vif"]
