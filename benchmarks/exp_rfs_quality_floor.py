"""RFS quality floor measurement: train on n synthetic patients, C-index on 60 unseen ones, oracle C.

Usage: python benchmarks/exp_rfs_quality_floor.py SEED N MODES EPOCHS   (e.g. 1 80 fusion,clinical 20)
Cohorts: train generate_cohort(n=N, seed=100+SEED), test (n=60, seed=200+SEED) under $EXP_DIR (default /tmp/hnc_exp).
"""
import os
import sys, time, numpy as np, warnings, logging
warnings.filterwarnings("ignore")
from hnc_core.synth import generate_cohort
from survival_head.rfs.workflows import train_folds, predict
from survival_head.evaluation.survival_metrics import harrell_c
from survival_head.rfs.evaluation import oracle_cindex
from survival_head.rfs.data import load_patient_images
seed=int(sys.argv[1]); n=int(sys.argv[2]); base=os.path.join(os.environ.get("EXP_DIR", "/tmp/hnc_exp"), f"rfs_{seed}")
t=time.time()
tr=f"{base}/train"; te=f"{base}/test"
import os
if not os.path.exists(tr+"/ground_truth.csv"): generate_cohort(tr, n=n, seed=100+seed, progress=False)
if not os.path.exists(te+"/ground_truth.csv"): generate_cohort(te, n=60, seed=200+seed, progress=False)
print("gen", round(time.time()-t,1))
for mode in sys.argv[3].split(","):
    t=time.time()
    man=train_folds(tr, f"{base}/m_{mode}", image_size=24, max_epochs=int(sys.argv[4]), batch_size=8, n_folds=3, mode=mode,
                    seed=seed, freeze_backbone=True, progress=False, cache_dir=f"{base}/cache")
    res=predict(te, f"{base}/m_{mode}", f"{base}/o_{mode}", progress=False, cache_dir=f"{base}/cache")
    y=res["data"].outcome()
    c=harrell_c(y, res["risk"]); oc=oracle_cindex(te, res["ids"], y)
    oofc=harrell_c(load_patient_images(tr,24,"rfs",f"{base}/cache",False).outcome(man["oof"]["PatientID"]), np.array(man["oof"]["risk"]))
    print(f"seed {seed} {mode}: test C {c:.3f} oracle {oc:.3f} oof C {oofc:.3f} time {time.time()-t:.1f}s", flush=True)
