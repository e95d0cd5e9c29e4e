// Drives mcptrail's web console in headless chromium (playwright-core) for
// TestConsoleBrowser (cmd/mcptrail/console_browser_e2e_test.go). Input from
// the environment; prints one JSON object: the steps taken, axe-core
// violations per page, CSP violations and page errors, the calls page's
// tab order, the screenshots written, and the first error.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const E = process.env;
const out = { steps: [], violations: {}, csp_errors: [], tab_order: [], screenshots: [], error: "" };
const base = E.CONSOLE_URL; // http://host:port/console/
const step = (s) => out.steps.push(s);
const fail = (s) => { throw new Error(s); };
const visited = [];
let browser;
let current;
let axePasses = 0;

async function shot(page, name) {
  fs.mkdirSync(E.SCREENSHOTS, { recursive: true });
  const file = path.join(E.SCREENSHOTS, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  out.screenshots.push(file);
  visited.push({ name, url: page.url() });
}

async function axe(ctx, name, url) {
  ctx.setDefaultTimeout(10000);
  const page = await ctx.newPage();
  current = page;
  await page.goto(url);
  await page.addScriptTag({ path: E.AXE });
  const vs = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return {
      passes: r.passes.length,
      violations: r.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.length} nodes, e.g. ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")})`),
    };
  });
  if (vs.passes < 10) fail(`axe on ${name}: only ${vs.passes} rules passed: did it run?`);
  axePasses += vs.passes;
  if (vs.violations.length) out.violations[name] = vs.violations;
  await page.close();
}

try {
  browser = await chromium.launch({ executablePath: E.CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
  ctx.setDefaultTimeout(10000);
  const page = await ctx.newPage();
  current = page;
  page.on("console", (m) => { if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text())) out.csp_errors.push(m.text()); });
  page.on("pageerror", (e) => out.csp_errors.push("page error: " + e));

  // Not signed in: the login form, with 401.
  const first = await page.goto(base + "calls");
  if (first.status() !== 401) fail(`calls without the admin token: HTTP ${first.status()}, want 401`);
  await shot(page, "login");
  await page.getByLabel("Admin token").fill(E.CONSOLE_TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Calls" }).waitFor();
  step("signed in with the admin token");

  // Find the failed call by filtering.
  await page.getByLabel("Principal").fill(E.FAILED_PRINCIPAL);
  await page.getByLabel("Outcome").selectOption("failed");
  await Promise.all([page.waitForURL(/outcome=failed/), page.getByRole("button", { name: "Filter" }).click()]);
  const rows = await page.locator("#calls-body tr").count();
  const link = page.getByRole("link", { name: E.FAILED_ID, exact: true });
  if ((await link.count()) !== 1) fail(`the failed call ${E.FAILED_ID} is not listed once under principal=${E.FAILED_PRINCIPAL}, outcome=failed (${rows} rows at ${page.url()}): ${await page.locator("main").innerHTML()}`);
  if (rows !== 1) fail(`filtering alice's failed calls shows ${rows} rows, want 1`);
  step(`filtered: principal ${E.FAILED_PRINCIPAL}, outcome failed: 1 row, ${E.FAILED_ID}`);
  await shot(page, "calls");

  // Keyboard: tab from the top of the page through the filters to the call.
  await page.locator("body").focus();
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press("Tab");
    const d = await page.evaluate(() => { const a = document.activeElement; return a.id || (a.textContent || "").trim() || a.tagName; });
    out.tab_order.push(d);
    if (d === E.FAILED_ID) break;
  }
  // Live tail: the box polls calls.json and keeps the same row.
  await page.getByLabel("Live tail (refresh every 2 s)").check();
  await page.getByRole("status").filter({ hasText: "1 calls" }).waitFor({ timeout: 10000 });
  await page.getByLabel("Live tail (refresh every 2 s)").uncheck();
  step("live tail refreshed the table from calls.json");

  // Open its trace: every hop, the error and its request ID.
  await Promise.all([page.waitForURL(/\/console\/trace\//), page.getByRole("link", { name: E.FAILED_ID, exact: true }).click()]);
  for (const hop of ["inbound", "upstream", "response"]) {
    if ((await page.locator("table.waterfall td", { hasText: new RegExp(`^${hop}$`) }).count()) < 1) fail(`trace: no ${hop} hop`);
  }
  const bars = await page.locator("table.waterfall svg.bar").count();
  const hops = await page.locator("table.waterfall tbody tr").count();
  if (bars !== hops) fail(`trace: ${bars} bars for ${hops} hops`);
  const alert = await page.getByRole("alert").innerText();
  if (!/Error/.test(alert) || !alert.includes(E.FAILED_ID)) fail(`trace: the error alert does not show the error with request ID ${E.FAILED_ID}: ${alert}`);
  step(`trace: ${hops} hops on one axis; ${alert.replace(/\s+/g, " ")}`);
  await page.locator("details summary").first().click();
  await shot(page, "trace");

  // Audit: filter, then download exactly those rows as CSV.
  await Promise.all([page.waitForURL(/\/console\/audit/), page.getByRole("link", { name: "Audit", exact: true }).click()]);
  await page.getByLabel("Since").fill("1h");
  await page.getByLabel("Principal").fill(E.FAILED_PRINCIPAL);
  await Promise.all([page.waitForURL(/principal=/), page.getByRole("button", { name: "Filter" }).click()]);
  const [dl] = await Promise.all([page.waitForEvent("download"), page.locator("#dl-csv").click()]);
  await dl.saveAs(E.AUDIT_CSV);
  step(`audit: downloaded ${dl.suggestedFilename()}`);
  await shot(page, "audit");

  // The replay run with the injected regression and its JSON paths.
  await Promise.all([page.waitForURL(/\/console\/replays$/), page.getByRole("link", { name: "Replay runs" }).click()]);
  await shot(page, "replays");
  await Promise.all([page.waitForURL(/\/console\/replays\/.+/), page.locator("tr.regressed a").first().click()]);
  const paths = await page.locator("code.jsonpath").allInnerTexts();
  if (!paths.some((p) => p.startsWith("/") && p.length > 1)) fail(`replay run: no JSON path of a change shown (paths ${JSON.stringify(paths)})`);
  const outcome = await page.getByText("outcome changed").count();
  if (outcome < 1) fail("replay run: the outcome change is not marked");
  step(`replay run: outcome changed; paths ${paths.join(", ")}`);
  await shot(page, "replay");

  await Promise.all([page.waitForURL(/\/console\/health/), page.getByRole("link", { name: "Health" }).click()]);
  if ((await page.locator("table.backends td", { hasText: "everything" }).count()) < 1) fail("health: backend everything not listed");
  await shot(page, "health");
  step("health: backends, recorder and ClickHouse shown");

  // Accessibility: axe-core on every page (a context that lets the checker's
  // script in: the console's CSP forbids injected scripts, as it should).
  const axeCtx = await browser.newContext({ bypassCSP: true });
  await axe(axeCtx, "login", base + "calls");
  await axeCtx.addCookies([{ name: "mcptrail_admin", value: E.CONSOLE_TOKEN, url: base }]);
  for (const v of visited) if (v.name !== "login") await axe(axeCtx, v.name, v.url);
  step(`axe-core (WCAG 2.1 A/AA) on ${visited.length} pages: ${axePasses} rule checks passed`);
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
  if (current) out.error += `\nat ${current.url()}:\n` + (await current.locator("main").innerText().catch(() => ""));
} finally {
  if (browser) await browser.close();
}
process.stdout.write(JSON.stringify(out));
