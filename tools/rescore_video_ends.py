"""Frame AUROC of a memad video run with the first A and last B frames of each test video
left out (MemAE's official protocol scores frames 8 .. n-8: A = 8, B = 7), from the run's
scores/*.csv, min-max normalised per video as `eval.video_normalization = "min_max"`.
Prints the figures over all frames too (they equal the run's metrics.csv).

Usage: python tools/rescore_video_ends.py RUN_DIR... (needs scikit-learn); used for the
MemAE section of docs/results.md.
"""
import csv,sys,glob,re
from collections import defaultdict
from sklearn.metrics import roc_auc_score
for run in sys.argv[1:]:
    rows=list(csv.DictReader(open(glob.glob(run+'/scores/*.csv')[0])))
    vids=defaultdict(list)
    for r in rows: vids[r['video']].append(r)
    res={}
    for name,(a,b) in {'all':(0,0),'8+7':(8,7)}.items():
        S=[];L=[];mac=[]
        for v,rs in vids.items():
            rs=sorted(rs,key=lambda r:int(re.findall(r'(\d+)\.\w+$',r['image'])[0]))
            rs=rs[a:len(rs)-b]
            s=[float(r['score']) for r in rs]; lo,hi=min(s),max(s)
            s=[(x-lo)/(hi-lo) for x in s]; l=[int(r['label']) for r in rs]
            S+=s;L+=l
            if 0<sum(l)<len(l): mac.append(roc_auc_score(l,s))
        res[name]=(roc_auc_score(L,S),sum(mac)/len(mac),len(S))
    print(run.split('/')[1], ' '.join(f"{k}: micro {v[0]:.4f} macro {v[1]:.4f} n={v[2]}" for k,v in res.items()))
