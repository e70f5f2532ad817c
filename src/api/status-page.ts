/**
 * The operator's status page. It is static: it holds no data and needs no authentication to
 * load; the page asks for a token (kept in sessionStorage only) and polls `/v1/status` with it.
 * Charts are drawn as inline SVG so the page has no dependencies and works offline.
 */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qkm status</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f1419;color:#e6e6e6}
header{padding:12px 20px;background:#1b232c;display:flex;gap:16px;align-items:center}
h1{font-size:18px;margin:0}main{padding:20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(340px,1fr))}
section{background:#1b232c;border-radius:8px;padding:14px}h2{font-size:15px;margin:0 0 8px}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #2b3642}
.ok{color:#5fd38d}.bad{color:#ff6b6b}.warn{color:#ffc857}#banner{padding:10px 20px;font-weight:600}
input{background:#0f1419;color:#e6e6e6;border:1px solid #2b3642;padding:4px 8px;width:320px}
svg{width:100%;height:120px;background:#0f1419;border-radius:4px}
</style></head><body>
<header><h1>qkm</h1><span id="meta"></span><span style="flex:1"></span>
<input id="token" type="password" placeholder="agent token (kept in this tab only)"></header>
<div id="banner"></div>
<main>
<section><h2>Entropy sources</h2><table id="sources"></table></section>
<section><h2>DRBG</h2><table id="drbg"></table></section>
<section><h2>Entropy served (bytes/s)</h2><svg id="rate" viewBox="0 0 300 120" preserveAspectRatio="none"></svg></section>
<section><h2>Min-entropy estimate (bits/sample)</h2><svg id="minent" viewBox="0 0 300 120" preserveAspectRatio="none"></svg></section>
<section><h2>Keys</h2><table id="keys"></table></section>
<section><h2>QKD links</h2><table id="qkd"></table></section>
<section><h2>Sessions</h2><table id="sessions"></table></section>
<section><h2>Audit log</h2><table id="audit"></table></section>
</main>
<script>
const $=id=>document.getElementById(id);
const esc=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const tok=$('token');tok.value=sessionStorage.getItem('qkm-token')||'';
tok.onchange=()=>{sessionStorage.setItem('qkm-token',tok.value.trim());poll();};
const hist=[],mins={};let last=null;
function rows(el,r){el.innerHTML=r.map(x=>'<tr>'+x.map(c=>'<td>'+c+'</td>').join('')+'</tr>').join('');}
function line(svg,series,max){const W=300,H=120;let out='';const colors=['#5fd38d','#4ea1ff','#ffc857','#ff6b6b'];
 series.forEach((s,i)=>{if(s.length<2)return;const pts=s.map((v,j)=>(j*W/(60-1)).toFixed(1)+','+(H-(v/(max||1))*(H-8)-4).toFixed(1)).join(' ');
 out+='<polyline fill="none" stroke="'+colors[i%4]+'" stroke-width="1.5" points="'+pts+'"/>';});svg.innerHTML=out;}
async function poll(){const t=sessionStorage.getItem('qkm-token');if(!t){$('banner').textContent='Enter an agent token to see the status.';return;}
 let s;try{const r=await fetch('/v1/status',{headers:{authorization:'Bearer '+t}});if(!r.ok){$('banner').textContent='status: HTTP '+r.status;$('banner').className='bad';return;}s=await r.json();}
 catch(e){$('banner').textContent='appliance unreachable';$('banner').className='bad';return;}
 $('meta').textContent=s.version+' · '+s.mode+' · region '+s.region+(s.nodeId?' · node '+s.nodeId:'');
 $('banner').className=s.degraded?'bad':'ok';$('banner').innerHTML=s.degraded?'DEGRADED: '+s.reasons.map(esc).join('; '):'All outputs backed by healthy quantum entropy';
 rows($('sources'),[['<b>id</b>','<b>kind</b>','<b>state</b>','<b>H claimed</b>','<b>H est.</b>']].concat(s.entropy.sources.map(x=>[esc(x.id)+(x.simulated?' (sim)':''),x.kind,
  '<span class="'+(x.state==='healthy'?'ok':x.state==='startup'?'warn':'bad')+'">'+x.state+'</span>'+(x.reason?' '+esc(x.reason):''),x.claimedMinEntropy,x.estimatedMinEntropy===undefined?'-':x.estimatedMinEntropy.toFixed(3)])));
 const d=s.entropy.drbg,c=s.entropy.counters;rows($('drbg'),[['name',esc(d.name)],['seed origin',d.seedOrigin],['reseed counter',d.reseedCounter],['seeded at',d.seededAt||'-'],
  ['reseeds',c.reseeds],['health failures',c.healthFailures],['bytes served',c.bytesServed],['degraded bytes',c.bytesServedDegraded]]);
 rows($('keys'),Object.entries(s.keys));
 rows($('qkd'),s.qkd.length?s.qkd.map(l=>[esc(l.peerSaeId),'<span class="'+(l.up?'ok':'bad')+'">'+(l.up?'up':'down')+'</span>',l.storedKeyCount??'-',esc(l.lastError||'')]):[['no QKD links configured']]);
 const ss=s.sessions,sum=o=>Object.values(o).reduce((a,b)=>a+b,0),codes=o=>Object.entries(o).map(([k,v])=>esc(k)+' '+v).join(', ')||'-';
 rows($('sessions'),[['<b>posture</b>','<b>initiated</b>','<b>degraded</b>','<b>accepted</b>']].concat(Object.keys(ss.initiated).map(p=>[p,ss.initiated[p],'<span class="'+(ss.initiatedDegraded[p]?'warn':'ok')+'">'+ss.initiatedDegraded[p]+'</span>',ss.accepted[p]])).concat([['refused (503)',ss.refused,'',''],['rejected',sum(ss.rejected),codes(ss.rejected),''],['abandoned',sum(ss.abandoned),codes(ss.abandoned),'']]));
 const a=s.audit;rows($('audit'),[['records',a.records],['sealed through',a.sealedThrough],['not yet sealed',a.records-a.sealedThrough]]);
 const now=Date.now();if(last){hist.push((c.bytesServed-last.b)/((now-last.t)/1000));if(hist.length>60)hist.shift();}last={b:c.bytesServed,t:now};
 line($('rate'),[hist],Math.max(1,...hist));
 for(const x of s.entropy.sources){(mins[x.id]=mins[x.id]||[]).push(x.estimatedMinEntropy||0);if(mins[x.id].length>60)mins[x.id].shift();}
 line($('minent'),Object.values(mins),8);}
poll();setInterval(poll,2000);
</script></body></html>`;
