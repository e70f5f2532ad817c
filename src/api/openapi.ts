/**
 * Finishing touches on the OpenAPI document @fastify/swagger builds from the route schemas:
 * `servers` (the address the caller reached), an `operationId` for every operation (derived from
 * method and path, so client generators get stable names), one shared `Error` component that
 * every error response points at, and the octet-stream form of `GET /v1/entropy` with its
 * `X-QKM-*` provenance headers. Plus a small self-contained page that renders the document
 * (`GET /docs`): no CDN, no script from anywhere but this page.
 */

// biome-ignore lint/suspicious/noExplicitAny: the OpenAPI document is plain JSON
type Json = any;

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;
const ERROR_DESCRIPTION = 'Every error response has this shape';

/** `POST /v1/keys/{id}/take` → `postKeysByIdTake`. */
export function operationIdFor(method: string, path: string): string {
  const words = path
    .split('/')
    .filter((s) => s !== '' && s !== 'v1')
    .map((s) => (s.startsWith('{') ? `by-${s.slice(1, -1)}` : s))
    .flatMap((s) => s.split(/[-_]/));
  return [method, ...words].map((w, i) => (i === 0 ? w : w.charAt(0).toUpperCase() + w.slice(1))).join('');
}

const PROVENANCE_HEADERS: Record<string, string> = {
  'X-QKM-Degraded': 'true when no healthy quantum source stood behind these bytes',
  'X-QKM-Seed-Origin': 'quantum or os',
  'X-QKM-DRBG': 'the DRBG mechanism that produced the bytes',
  'X-QKM-Reseed-Counter': 'SP 800-90A reseed_counter at generation',
  'X-QKM-Entropy-Credited': 'bits of entropy credited to the seed',
  'X-QKM-Reason': 'why the bytes are degraded (percent-encoded); only when degraded',
  'X-QKM-Provenance': 'the whole provenance object, JSON, base64url',
};

export function finishOpenApi(doc: Json, serverUrl: string | undefined): Json {
  const out = structuredClone(doc);
  if (serverUrl) out.servers = [{ url: serverUrl, description: 'this appliance' }];
  out.components ??= {};
  out.components.schemas ??= {};
  for (const [path, item] of Object.entries<Json>(out.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      op.operationId ??= operationIdFor(method, path);
      for (const response of Object.values<Json>(op.responses ?? {})) {
        const schema = response?.content?.['application/json']?.schema;
        if (schema?.description === ERROR_DESCRIPTION) {
          out.components.schemas.Error ??= schema;
          response.description = ERROR_DESCRIPTION;
          response.content['application/json'].schema = { $ref: '#/components/schemas/Error' };
        }
      }
    }
  }
  const entropy = out.paths?.['/v1/entropy']?.get?.responses?.['200'];
  if (entropy) {
    entropy.description = 'The bytes: JSON with base64 data, or raw with Accept: application/octet-stream';
    entropy.content['application/octet-stream'] = { schema: { type: 'string', format: 'binary' } };
    entropy.headers = Object.fromEntries(
      Object.entries(PROVENANCE_HEADERS).map(([name, description]) => [
        name,
        { description: `${description} (octet-stream responses)`, schema: { type: 'string' } },
      ]),
    );
  }
  return out;
}

/** `GET /docs`: renders /docs/json as a list of operations; inline script, no external loads. */
export const DOCS_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qkm API</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:20px;color:#1b232c}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ccd}
details{border:1px solid #dde;border-radius:6px;margin:6px 0;padding:6px 10px}
summary{cursor:pointer}code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f4f6f8;padding:8px;overflow:auto}
.m{display:inline-block;min-width:58px;font-weight:700}.get{color:#1a7f37}.post{color:#0b62d6}.delete{color:#c62828}.put,.patch{color:#a66f00}
</style></head><body>
<h1 id="title">qkm API</h1><p id="desc"></p><p><a href="/docs/json">OpenAPI document (JSON)</a></p>
<div id="ops"></div>
<script>
const esc=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
fetch('/docs/json').then(r=>r.json()).then(doc=>{
  document.getElementById('title').textContent=doc.info.title+' '+doc.info.version;
  document.getElementById('desc').textContent=doc.info.description||'';
  const byTag={};
  for(const [path,item] of Object.entries(doc.paths))for(const [m,op] of Object.entries(item)){
    if(typeof op!=='object'||!op.responses)continue;const t=(op.tags||['other'])[0];(byTag[t]=byTag[t]||[]).push([m,path,op]);}
  let html='';
  for(const [tag,ops] of Object.entries(byTag)){html+='<h2>'+esc(tag)+'</h2>';
    for(const [m,path,op] of ops){
      html+='<details id="'+esc(op.operationId)+'"><summary><span class="m '+esc(m)+'">'+esc(m.toUpperCase())+'</span> <code>'+esc(path)+'</code> — '+esc(op.summary||'')+'</summary>';
      if(op.description)html+='<p>'+esc(op.description)+'</p>';
      html+='<p>operationId <code>'+esc(op.operationId)+'</code>'+(op.security?' · needs a bearer token':'')+'</p>';
      if(op.parameters&&op.parameters.length)html+='<p><b>Parameters</b></p><pre>'+esc(op.parameters.map(p=>p.in+' '+p.name+(p.required?' (required)':'')+': '+JSON.stringify(p.schema)).join('\\n'))+'</pre>';
      if(op.requestBody)html+='<p><b>Request body</b></p><pre>'+esc(JSON.stringify(op.requestBody.content,null,2))+'</pre>';
      for(const [code,r] of Object.entries(op.responses))html+='<p><b>'+esc(code)+'</b> '+esc(r.description||'')+'</p>'+(r.content?'<pre>'+esc(JSON.stringify(r.content,null,2))+'</pre>':'')+(r.headers?'<pre>'+esc(Object.keys(r.headers).join('\\n'))+'</pre>':'');
      html+='</details>';}}
  html+='<h2>Schemas</h2><pre>'+esc(JSON.stringify(doc.components.schemas,null,2))+'</pre>';
  document.getElementById('ops').innerHTML=html;
}).catch(e=>{document.getElementById('ops').textContent='could not load /docs/json: '+e;});
</script></body></html>`;
