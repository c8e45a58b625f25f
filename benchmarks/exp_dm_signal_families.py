"""DM: AUC on unseen patients when the DM signal sits in different feature families (synth dm_signal option).

Usage: python benchmarks/exp_dm_signal_families.py SEED DM_SIGNAL N_TRAIN N_TEST [stability|rf] [FOV_MM]
Trains one fold model (image 32^3, 2 image epochs, fast radiomics) on generate_cohort(N_TRAIN, seed=400+SEED,
dm_signal=...) and scores generate_cohort(N_TEST, seed=500+SEED) for several modality sets, a penalised logistic
model on all radiomics, and the oracle (true DM probability). FOV_MM: side of the image crop (default 96 mm, 3 mm
voxels at 32^3; 48 gives 1.5 mm voxels, which resolve the 8 mm peritumoral ring). Work folder: $EXP_DIR (default /tmp/hnc_exp).
"""
import os
import sys, os, time, warnings, logging
warnings.filterwarnings("ignore"); logging.disable(logging.ERROR)
import numpy as np, torch
torch.set_num_threads(1)
from sklearn.metrics import roc_auc_score
from hnc_core.synth import generate_cohort, load_ground_truth
from survival_head.dm.data import load_dm_data
from survival_head.dm.training import fit_fold, embed, MODALITIES
from survival_head.dm.workflows import make_config
from survival_head.dm.analysis import logistic_all_radiomics
seed=int(sys.argv[1]); sig=sys.argv[2]; ntr=int(sys.argv[3]); nte=int(sys.argv[4]); sel=sys.argv[5] if len(sys.argv)>5 else "stability"; fov=float(sys.argv[6]) if len(sys.argv)>6 else 96.0
base=os.path.join(os.environ.get("EXP_DIR", "/tmp/hnc_exp"), f"dm_{sig}_{seed}")
t=time.time()
for part,n,s in (("train",ntr,400+seed),("test",nte,500+seed)):
    if not os.path.exists(f"{base}/{part}/ground_truth.csv"): generate_cohort(f"{base}/{part}", n=n, seed=s, progress=False, dm_signal=sig)
cfg=make_config(image_size=32, fov_mm=fov, window_size=4, feature_size=6, max_epochs=2, seed=seed, selection=sel)
kw=dict(image_size=32, fov_mm=fov, radiomics_params="fast", progress=False, workers=1)
from survival_head.radiomics.extract import load_params
kw["radiomics_params"]=load_params("fast")
tr=load_dm_data(f"{base}/train", f"{base}/cache", **kw); te=load_dm_data(f"{base}/test", f"{base}/cache", **kw)
print("load", round(time.time()-t), "s; prevalence", tr.y.mean().round(2), te.y.mean().round(2), flush=True)
t=time.time()
sets=[MODALITIES, ("radiomics","clinical"), ("clinical",), ("radiomics",), ("image",)]
fitted, b = fit_fold(tr, np.arange(len(tr.ids)), cfg, sets)
deep = embed(b, te.images)
res={n: roc_auc_score(te.y, f.predict_proba(te, deep)) for n,f in fitted.items()}
res["logistic_all_radiomics"]=roc_auc_score(te.y, logistic_all_radiomics(tr.radiomics, tr.y, te.radiomics, seed))
gt=load_ground_truth(f"{base}/test"); res["oracle"]=roc_auc_score(te.y, gt.loc[te.ids,"true_dm_probability"])
print(f"seed {seed} signal {sig} sel {sel} fov {fov:g} mm: " + " ".join(f"{k}={v:.3f}" for k,v in res.items()), f"k={len(fitted['image+radiomics+clinical'].selector.selected_)}", f"({time.time()-t:.0f}s)", flush=True)
