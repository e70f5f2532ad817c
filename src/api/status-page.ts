/**
 * The operator's status page. It is static: it holds no data and needs no authentication to
 * load. The operator logs in once with an agent token (`POST /ui/login`), which sets an
 * HttpOnly cookie the page cannot read and that the appliance accepts on read routes only
 * (ui-login.ts); a reload keeps the login, "Log out" ends it. The page polls `/v1/status` and
 * the server-kept history (`/v1/status/history`) and draws its charts — axes, legend, time
 * range — as inline SVG, so it has no dependencies and works offline.
 *
 * Element ids are an interface of their own: the browser test (test/e2e/status-page.test.ts)
 * finds the login form, the charts and their legends by them.
 */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qkm status</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f1419;color:#e6e6e6}
header{padding:12px 20px;background:#1b232c;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
h1{font-size:18px;margin:0}main{padding:20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(360px,1fr))}
section{background:#1b232c;border-radius:8px;padding:14px}h2{font-size:15px;margin:0 0 8px}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #2b3642}
.ok{color:#5fd38d}.bad{color:#ff6b6b}.warn{color:#ffc857}#banner{padding:10px 20px;font-weight:600}
input,select,button{background:#0f1419;color:#e6e6e6;border:1px solid #2b3642;padding:4px 8px;border-radius:4px}
button{cursor:pointer}input{width:320px}
svg.chart{width:100%;height:auto;background:#0f1419;border-radius:4px}
svg.chart text{fill:#9aa7b4;font-size:10px}svg.chart .axis{stroke:#52606d;stroke-width:1}svg.chart .grid{stroke:#2b3642;stroke-width:1}
.legend{display:flex;gap:12px;flex-wrap:wrap;margin-top:6px;font-size:12px}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
#login{padding:40px 20px;display:none}#login form{display:flex;gap:8px;align-items:center}
.hidden{display:none!important}
</style></head><body>
<header><h1>qkm</h1><span id="meta"></span><span style="flex:1"></span>
<label>time range <select id="range">
<option value="300" selected>last 5 min</option><option value="900">last 15 min</option>
<option value="3600">last hour</option><option value="">all kept</option></select></label>
<span id="who"></span><button id="logout" type="button" class="hidden">Log out</button></header>
<div id="banner"></div>
<section id="login"><h2>Log in</h2>
<p>Paste an agent token (any scope). The page never keeps it: the appliance answers with a
read-only session cookie (HttpOnly, SameSite=Strict) that works for this page's reads only.</p>
<form id="login-form"><input id="token" type="password" autocomplete="off" placeholder="agent token">
<button type="submit">Log in</button><span id="login-error" class="bad"></span></form></section>
<main id="dash" class="hidden">
<section><h2>Entropy served</h2><svg id="chart-rate" class="chart" viewBox="0 0 420 190"></svg><div class="legend" id="legend-rate"></div></section>
<section><h2>Min-entropy estimate</h2><svg id="chart-minent" class="chart" viewBox="0 0 420 190"></svg><div class="legend" id="legend-minent"></div></section>
<section><h2>Keys</h2><svg id="chart-keys" class="chart" viewBox="0 0 420 190"></svg><div class="legend" id="legend-keys"></div></section>
<section><h2>Entropy sources</h2><table id="sources"></table></section>
<section><h2>DRBG</h2><table id="drbg"></table></section>
<section><h2>Key counts</h2><table id="keys"></table></section>
<section><h2>QKD links</h2><table id="qkd"></table></section>
<section><h2>Sessions</h2><table id="sessions"></table></section>
<section><h2>Audit log</h2><table id="audit"></table></section>
</main>
<script>
const $=id=>document.getElementById(id);
const esc=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const COLORS=['#5fd38d','#4ea1ff','#ffc857','#ff6b6b','#c792ea','#89ddff'];
const range=$('range');range.value=localStorage.getItem('qkm-range')??range.value;
range.onchange=()=>{localStorage.setItem('qkm-range',range.value);poll();};
function rows(el,r){el.innerHTML=r.map(x=>'<tr>'+x.map(c=>'<td>'+c+'</td>').join('')+'</tr>').join('');}
function showLogin(msg){$('login').style.display='block';$('dash').classList.add('hidden');$('logout').classList.add('hidden');
 $('who').textContent='';$('banner').textContent=msg||'';$('banner').className=msg?'bad':'';}
function showDash(){$('login').style.display='none';$('dash').classList.remove('hidden');$('logout').classList.remove('hidden');}
/** Rounds up to 1, 2 or 5 times a power of ten, so the axis ticks are readable numbers. */
function niceMax(v){if(!(v>0))return 1;const p=Math.pow(10,Math.floor(Math.log10(v)));const m=v/p;return (m<=1?1:m<=2?2:m<=5?5:10)*p;}
function fmtNum(v){return Math.abs(v)>=1e6?(v/1e6).toFixed(1)+'M':Math.abs(v)>=1e3?(v/1e3).toFixed(1)+'k':String(Math.round(v*100)/100);}
function fmtTime(t){const d=new Date(t);return d.toTimeString().slice(0,8);}
/** A line chart with a y axis (ticks, unit), a time axis and a legend; series: [{name, points:[[t,v]]}]. */
function chart(name,series,o){const svg=$('chart-'+name),L=48,R=10,T=10,B=34,W=420,H=190,w=W-L-R,h=H-T-B;
 const t0=o.t0,t1=Math.max(o.t1,o.t0+1),vals=series.flatMap(s=>s.points.map(p=>p[1]));
 const ymax=o.ymax??niceMax(Math.max(0,...vals));const x=t=>L+(t-t0)/(t1-t0)*w,y=v=>T+h-(v/ymax)*h;
 let out='';for(let i=0;i<=4;i++){const v=ymax*i/4,yy=y(v).toFixed(1);
  out+='<line class="grid" x1="'+L+'" x2="'+(L+w)+'" y1="'+yy+'" y2="'+yy+'"/><text x="'+(L-4)+'" y="'+(+yy+3)+'" text-anchor="end">'+fmtNum(v)+'</text>';}
 for(let i=0;i<=3;i++){const t=t0+(t1-t0)*i/3,xx=x(t).toFixed(1);
  out+='<line class="axis" x1="'+xx+'" x2="'+xx+'" y1="'+(T+h)+'" y2="'+(T+h+4)+'"/><text class="xtick" x="'+xx+'" y="'+(T+h+15)+'" text-anchor="'+(i===0?'start':i===3?'end':'middle')+'">'+fmtTime(t)+'</text>';}
 out+='<line class="axis" x1="'+L+'" x2="'+L+'" y1="'+T+'" y2="'+(T+h)+'"/><line class="axis" x1="'+L+'" x2="'+(L+w)+'" y1="'+(T+h)+'" y2="'+(T+h)+'"/>';
 out+='<text class="ylabel" x="12" y="'+(T+h/2)+'" transform="rotate(-90 12 '+(T+h/2)+')" text-anchor="middle">'+esc(o.unit)+'</text>';
 out+='<text x="'+(L+w/2)+'" y="'+(H-3)+'" text-anchor="middle">time</text>';
 series.forEach((s,i)=>{const pts=s.points.filter(p=>p[0]>=t0).map(p=>x(p[0]).toFixed(1)+','+y(Math.min(p[1],ymax)).toFixed(1)).join(' ');
  if(pts)out+='<polyline data-series="'+esc(s.name)+'" fill="none" stroke="'+COLORS[i%COLORS.length]+'" stroke-width="1.5" points="'+pts+'"/>';});
 svg.innerHTML=out;
 $('legend-'+name).innerHTML=series.map((s,i)=>'<span><i style="background:'+COLORS[i%COLORS.length]+'"></i>'+esc(s.name)+'</span>').join('')||'<span>no data yet</span>';}
function drawHistory(hist){const now=Date.now(),s=hist.samples,sec=range.value?Number(range.value):null;
 const t0=sec?now-sec*1000:(s.length?s[0].t:now-60000),t1=now;
 chart('rate',[{name:'served (bytes/s)',points:s.map(x=>[x.t,x.entropyBytesPerSec])},{name:'of which degraded (bytes/s)',points:s.map(x=>[x.t,x.degradedBytesPerSec])}],{t0,t1,unit:'bytes/s'});
 const ids=[...new Set(s.flatMap(x=>x.sources.map(y=>y.id)))];
 chart('minent',ids.map(id=>({name:id+' (estimate)',points:s.flatMap(x=>x.sources.filter(y=>y.id===id&&y.estimatedMinEntropy!==undefined).map(y=>[x.t,y.estimatedMinEntropy]))})),{t0,t1,unit:'bits/sample',ymax:8});
 const links=[...new Set(s.flatMap(x=>x.qkd.map(l=>l.peerSaeId)))];
 chart('keys',[{name:'active keys',points:s.map(x=>[x.t,x.activeKeys])}].concat(links.map(p=>({name:'QKD stored keys '+p,points:s.flatMap(x=>x.qkd.filter(l=>l.peerSaeId===p&&l.storedKeyCount!==undefined).map(l=>[x.t,l.storedKeyCount]))}))),{t0,t1,unit:'keys'});}
function drawStatus(s){$('meta').textContent=s.version+' · '+s.mode+' · region '+s.region+(s.nodeId?' · node '+s.nodeId:'');
 $('banner').className=s.degraded?'bad':'ok';$('banner').innerHTML=s.degraded?'DEGRADED: '+s.reasons.map(esc).join('; '):'All outputs backed by healthy quantum entropy';
 rows($('sources'),[['<b>id</b>','<b>kind</b>','<b>state</b>','<b>H claimed</b>','<b>H est.</b>']].concat(s.entropy.sources.map(x=>[esc(x.id)+(x.simulated?' (sim)':''),esc(x.kind),
  '<span class="'+(x.state==='healthy'?'ok':x.state==='startup'?'warn':'bad')+'">'+esc(x.state)+'</span>'+(x.reason?' '+esc(x.reason):''),x.claimedMinEntropy,x.estimatedMinEntropy===undefined?'-':x.estimatedMinEntropy.toFixed(3)])));
 const d=s.entropy.drbg,c=s.entropy.counters;rows($('drbg'),[['name',esc(d.name)],['seed origin',esc(d.seedOrigin)],['reseed counter',d.reseedCounter],['seeded at',esc(d.seededAt||'-')],
  ['reseeds',c.reseeds],['health failures',c.healthFailures],['bytes served',c.bytesServed],['degraded bytes',c.bytesServedDegraded]]);
 rows($('keys'),Object.entries(s.keys).map(([k,v])=>[esc(k),v]));
 rows($('qkd'),s.qkd.length?s.qkd.map(l=>[esc(l.peerSaeId),'<span class="'+(l.up?'ok':'bad')+'">'+(l.up?'up':'down')+'</span>',l.storedKeyCount??'-',esc(l.lastError||'')]):[['no QKD links configured']]);
 const ss=s.sessions,sum=o=>Object.values(o).reduce((a,b)=>a+b,0),codes=o=>Object.entries(o).map(([k,v])=>esc(k)+' '+v).join(', ')||'-';
 rows($('sessions'),[['<b>posture</b>','<b>initiated</b>','<b>degraded</b>','<b>accepted</b>']].concat(Object.keys(ss.initiated).map(p=>[esc(p),ss.initiated[p],'<span class="'+(ss.initiatedDegraded[p]?'warn':'ok')+'">'+ss.initiatedDegraded[p]+'</span>',ss.accepted[p]])).concat([['refused (503)',ss.refused,'',''],['rejected',sum(ss.rejected),codes(ss.rejected),''],['abandoned',sum(ss.abandoned),codes(ss.abandoned),'']]));
 const a=s.audit;rows($('audit'),[['records',a.records],['sealed through',a.sealedThrough],['not yet sealed',a.records-a.sealedThrough]].concat(s.pqc?[['PQC backend',esc(s.pqc.backend)+' (encaps: '+esc(s.pqc.kemEncaps)+')']]:[]));}
async function poll(){let r,h;
 try{r=await fetch('/v1/status',{credentials:'same-origin'});}catch(e){$('banner').textContent='appliance unreachable';$('banner').className='bad';return;}
 if(r.status===401){showLogin('');return;}
 if(!r.ok){$('banner').textContent='status: HTTP '+r.status;$('banner').className='bad';return;}
 showDash();drawStatus(await r.json());
 try{h=await fetch('/v1/status/history'+(range.value?'?seconds='+range.value:''),{credentials:'same-origin'});if(h.ok)drawHistory(await h.json());}catch(e){}}
$('login-form').onsubmit=async e=>{e.preventDefault();const token=$('token').value.trim();if(!token)return;$('login-error').textContent='';
 let r;try{r=await fetch('/ui/login',{method:'POST',headers:{'content-type':'application/json'},body:JSON.stringify({token}),credentials:'same-origin'});}
 catch(err){$('login-error').textContent='appliance unreachable';return;}
 $('token').value='';if(!r.ok){const b=await r.json().catch(()=>({}));$('login-error').textContent=b.message||('HTTP '+r.status);return;}
 const who=await r.json();$('who').textContent=who.agent;poll();};
$('logout').onclick=async()=>{await fetch('/ui/logout',{method:'POST',credentials:'same-origin'}).catch(()=>{});showLogin('logged out');};
poll();setInterval(poll,2000);
</script></body></html>`;
