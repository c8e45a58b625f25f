"""RFS: mean fold validation C vs unseen-patient C for downstream_fit in_sample / out_of_sample.

Usage: python benchmarks/exp_rfs_downstream_gap.py SEED MODES FITS EPOCHS   (e.g. 0 fusion in_sample,out_of_sample 20)
Needs the cohorts written by exp_rfs_quality_floor.py for the same SEED (under $EXP_DIR, default /tmp/hnc_exp).
"""
import os
import sys, time, numpy as np, warnings, logging
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import torch; torch.set_num_threads(1)
from survival_head.rfs.workflows import train_folds, predict
from survival_head.evaluation.survival_metrics import harrell_c
from survival_head.rfs.data import load_patient_images
seed=int(sys.argv[1]); base=os.path.join(os.environ.get("EXP_DIR", "/tmp/hnc_exp"), f"rfs_{seed}"); tr=f"{base}/train"; te=f"{base}/test"
for mode in sys.argv[2].split(","):
  for ds in sys.argv[3].split(","):
    t=time.time(); m=f"{base}/m_{mode}_{ds}"
    man=train_folds(tr, m, image_size=24, max_epochs=int(sys.argv[4]), batch_size=8, n_folds=3, mode=mode, seed=seed,
                    freeze_backbone=True, progress=False, cache_dir=f"{base}/cache", downstream_fit=ds)
    res=predict(te, m, f"{m}_o", progress=False, cache_dir=f"{base}/cache")
    c=harrell_c(res["data"].outcome(), res["risk"])
    fv=np.mean([f["val_cindex"] for f in man["folds"]])
    print(f"seed {seed} {mode} {ds}: mean fold val C {fv:.3f} test C {c:.3f} gap {fv-c:+.3f} ({time.time()-t:.0f}s)", flush=True)
