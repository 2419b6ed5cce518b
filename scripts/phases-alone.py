#!/usr/bin/env python3
# Per tenant of the phases scenario: latency of requests that ran while no other tenant had
# a request in flight ("alone") and of the others, over the tenant's solo latency.
import json,sys
r=json.load(open(sys.argv[1]))
solo={s['key']:s['metrics'] for s in r['solo']}
print('| mode | tenant | requests alone | alone: mean ÷ solo | alone: p99 ÷ solo p99 | beside another: mean ÷ solo |')
print('| --- | --- | ---: | ---: | ---: | ---: |')
for run in r['runs']:
    if run['scenario']!='phases' or run['status']!='ok': continue
    ts=run['tenants']
    iv=[[(s['start'],s['end']) for s in t['samples']] for t in ts]
    for i,t in enumerate(ts):
        sp=t['spec']; plan=run['mode'].endswith('-plan')
        key="%s/b%d/s%d/n%d/%s"%(sp['model'],sp.get('batch',8),sp.get('seq',128),sp.get('new_tokens',8),'plan' if plan else 'eager')
        sm=solo.get(key)
        if not sm: continue
        others=sorted(x for j,o in enumerate(iv) if j!=i for x in o)
        alone=[];beside=[]
        for (a,b) in iv[i]:
            ov=any(s<b and e>a for (s,e) in others)
            (beside if ov else alone).append((b-a)*1e3)
        def mean(v): return sum(v)/len(v) if v else float('nan')
        def p99(v):
            v=sorted(v); return v[int(0.99*(len(v)-1))] if v else float('nan')
        m=sm['latency']
        print("| %s | %s | %d | %.2f | %.2f | %.2f |"%(run['mode'],sp['model'],len(alone),mean(alone)/m['mean'],p99(alone)/m['p99'],mean(beside)/m['mean']))
