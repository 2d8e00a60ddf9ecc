// Entitle widgets v1: <entitle-pricing-table>, <entitle-checkout>, <entitle-customer-portal>.
// Plain modern JavaScript (an ES module, no framework, no build step): served by Entitle at
// /widgets/v1/entitle.js. Each widget takes client-key, customer-id and customer-token attributes
// (docs/widgets.md); the API is the one that served this file unless api-url says otherwise.

const SERVED_FROM = new URL("../..", import.meta.url).href.replace(/\/$/, "");

const DEFAULT_TEXTS = {
  monthly: "Monthly",
  annually: "Annually",
  perMonth: "/ month",
  perYear: "/ year",
  unitCount: "{quantity} × {price}",
  overage: "{price} per {unit} beyond the limit",
  creditRate: "{credits} per {unit}",
  creditGrant: "{credits} credits {period}",
  free: "Free",
  customPrice: "Custom price",
  currentPlan: "Current plan",
  startTrial: "Start free trial",
  subscribe: "Choose plan",
  upgrade: "Upgrade",
  downgrade: "Downgrade",
  contactSales: "Contact sales",
  scheduled: "Change scheduled",
  everythingIn: "Everything in {plan}, plus:",
  trialBadge: "{days}-day free trial",
  trialBadgeMonths: "{months}-month free trial",
  addons: "Add-ons",
  unlimited: "Unlimited",
  loading: "Loading…",
  retry: "Retry",
  errorToken: "Your session has expired or is not valid. Please sign in again.",
  errorNotFound: "{what} was not found.",
  errorUnreachable: "The billing service cannot be reached right now. Check your connection and retry.",
  errorGeneric: "Something went wrong: {message}",
  errorCustom: "This plan has a custom price: please contact sales.",
  errorNoPublishableKey: "Card payments are not set up yet: the Stripe integration has no publishable key.",
  checkoutTitle: "Subscribe to {plan}",
  billingPeriod: "Billing period",
  quantity: "Quantity",
  quantityRange: "Choose from {least} to {most} {units}.",
  quantityAtLeast: "Choose at least {least} {units}, in whole units.",
  addonRange: "Choose from 0 to {most} of {addon}.",
  addonWhole: "Choose a whole number of {addon}.",
  promotionCode: "Promotion code",
  applyCode: "Apply",
  promotionInvalid: "This promotion code cannot be used: {message}",
  promotionFix: "Correct or remove the promotion code first.",
  summary: "Summary",
  subtotal: "Subtotal",
  discount: "Discount",
  tax: "Tax",
  dueToday: "Due today",
  thenRecurring: "Then {amount} {period}",
  card: "Card",
  otherCard: "Use another card",
  pay: "Subscribe",
  paying: "Processing…",
  redirecting: "Redirecting to payment…",
  noProvider: "No payment provider is connected: the plan starts without payment.",
  completed: "You are subscribed to {plan}.",
  paymentConfirming: "Your payment is being confirmed: {plan} starts once it is paid.",
  changeScheduled: "Your change to {plan} takes effect on {date}.",
  dueAtPeriodEnd: "Nothing is due today: the change takes effect on {date}, at the end of the current billing period.",
  choosePlan: "Choose a plan in the pricing table to subscribe.",
  subscriptions: "Subscriptions",
  nextBilling: "Next billing date: {date}",
  trialEnds: "Trial ends in {days} days",
  trialEndsOne: "Trial ends in 1 day",
  paymentPending: "Waiting for payment: your current plan stays until it is paid",
  cancelsOn: "Ends on {date}",
  scheduledChange: "Changes to {plan} on {date}",
  cancelScheduled: "Cancel scheduled change",
  changePlan: "Change plan",
  cancelSubscription: "Cancel subscription",
  confirmCancel: "Cancel at the end of the billing period?",
  confirmYes: "Yes, cancel",
  confirmNo: "Keep my plan",
  usage: "Usage",
  resetsOn: "resets {date}",
  invoices: "Invoices",
  noInvoices: "No invoices yet.",
  download: "PDF",
  view: "View",
  paymentMethod: "Payment method",
  noPaymentMethod: "No payment method on file.",
  expires: "expires {month}/{year}",
  update: "Update",
};

const STYLE = `
:host { display: block; font-family: var(--entitle-font, system-ui, -apple-system, "Segoe UI", sans-serif);
  color: var(--entitle-text, #1f2430); --_accent: var(--entitle-accent, #4f46e5);
  --_muted: var(--entitle-muted, #6b7280); --_border: var(--entitle-border, #e5e7eb);
  --_radius: var(--entitle-radius, 12px); --_bg: var(--entitle-background, #fff); --_danger: var(--entitle-danger, #b42318); }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
button { font: inherit; cursor: pointer; border-radius: calc(var(--_radius) / 2); padding: 8px 14px;
  border: 1px solid var(--_accent); background: var(--_accent); color: var(--entitle-accent-text, #fff); }
button.secondary { background: transparent; color: var(--_accent); }
button[disabled] { opacity: .55; cursor: default; }
input, select { font: inherit; padding: 6px 8px; border: 1px solid var(--_border); border-radius: 6px; }
.muted { color: var(--_muted); font-size: .9em; }
.error { border: 1px solid var(--_danger); color: var(--_danger); background: #fef3f2; padding: 12px 16px;
  border-radius: var(--_radius); display: flex; gap: 12px; align-items: center; justify-content: space-between; }
.toggle { display: inline-flex; border: 1px solid var(--_border); border-radius: 999px; padding: 3px; margin-bottom: 16px; }
.toggle button { border: 0; background: transparent; color: inherit; border-radius: 999px; }
.toggle button[aria-pressed="true"] { background: var(--_accent); color: #fff; }
.plans { display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); }
.plan, .card-box { border: 1px solid var(--_border); border-radius: var(--_radius); padding: 20px; background: var(--_bg);
  display: flex; flex-direction: column; gap: 10px; }
.plan.current { border-color: var(--_accent); box-shadow: 0 0 0 1px var(--_accent); }
.plan h3 { margin: 0; }
.price { font-size: 1.6em; font-weight: 600; }
.badge { display: inline-block; align-self: flex-start; font-size: .75em; padding: 2px 8px; border-radius: 999px; background: #eef2ff; color: var(--_accent); }
ul { margin: 0; padding-left: 1.1em; } li { margin: 2px 0; }
.plan button { margin-top: auto; }
.row { display: flex; gap: 12px; align-items: center; justify-content: space-between; flex-wrap: wrap; }
.bar { height: 8px; background: var(--_border); border-radius: 999px; overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--_accent); }
.bar.over > span { background: var(--_danger); }
table { width: 100%; border-collapse: collapse; } td, th { text-align: left; padding: 6px 4px; border-bottom: 1px solid var(--_border); }
section { margin-bottom: 20px; } h4 { margin: 0 0 8px; }
.summary td:last-child { text-align: right; } .total td { font-weight: 600; }
::slotted([data-entitle-card]) { display: block; padding: 10px; border: 1px solid var(--_border); border-radius: 6px; min-height: 40px; }
`;

// Attributes that name one control of a widget's view (unlike `data-action`, which a button of each
// subscription shares): what keeps the focus through a redraw.
const FOCUS_KEYS = ["data-period", "data-field", "data-charge", "data-addon"];

// What a preview answers for a promotion code that cannot apply (the checkout then previews without it).
const PROMOTION_REFUSED = new Set(["PROMOTION_CODE_INVALID", "BILLING_INTEGRATION_REQUIRED"]);

export class EntitleApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, name) => (values[name] ?? ""));
}

function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// How many decimals an amount of the API is written with ("0.005" and 5e-7 alike).
function decimalsOf(amount) {
  const [mantissa, exponent] = String(amount).toLowerCase().split("e");
  return Math.max(0, (mantissa.split(".")[1] || "").length - Number(exponent || 0));
}

/** An amount in its currency: in its minor units (a fee, a total: what an invoice charges), or with
 * `rate` to its last digit. A rate is multiplied before anything is rounded, so one below the minor
 * unit ($0.005 a token) is a real price: rounded to the cent it would read $0.01, or $0.00. */
function money(amount, currency, locale, rate = false) {
  if (amount === null || amount === undefined) return "";
  const options = { style: "currency", currency: (currency || "usd").toUpperCase() };
  const usual = new Intl.NumberFormat(locale, options);
  const decimals = decimalsOf(amount);
  if (!rate || decimals <= usual.resolvedOptions().maximumFractionDigits) return usual.format(Number(amount));
  return new Intl.NumberFormat(locale, { ...options, maximumFractionDigits: Math.min(decimals, 20) }).format(Number(amount));
}

function number(value, locale) {
  return new Intl.NumberFormat(locale).format(Number(value));
}

function date(value, locale) {
  return value ? new Intl.DateTimeFormat(locale, { dateStyle: "medium" }).format(new Date(value)) : "";
}

class EntitleElement extends HTMLElement {
  static get observedAttributes() {
    return ["client-key", "customer-id", "customer-token", "api-url", "texts", "locale"];
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this._texts = {};
    this._generation = 0;
  }

  /** Text overrides: `element.texts = {upgrade: "Go bigger"}` or the `texts` attribute (JSON). */
  get texts() { return this._texts; }
  set texts(value) { this._texts = { ...value }; this.refresh(); }

  t(name, values = {}) {
    let fromAttribute = {};
    try { fromAttribute = JSON.parse(this.getAttribute("texts") || "{}"); } catch { fromAttribute = {}; }
    return fill(this._texts[name] ?? fromAttribute[name] ?? DEFAULT_TEXTS[name] ?? name, values);
  }

  get locale() { return this.getAttribute("locale") || navigator.language || "en-US"; }
  get customerId() { return this.getAttribute("customer-id"); }

  connectedCallback() { this.refresh(); }
  attributeChangedCallback(_name, oldValue, newValue) { if (oldValue !== newValue && this.isConnected) this.refresh(); }

  /** Load again and render (the host calls it after something changed elsewhere). */
  refresh() {
    if (!this.isConnected) return;
    // What is on screen answers the old attributes: nothing in it may act until the new view replaces it.
    this.setAttribute("aria-busy", "true");
    this._generation++;  // a load or card mount already under way must not paint over what comes next
    this.beforeRefresh?.();
    clearTimeout(this._refreshTimer);
    // Attributes set one after another in the same task load once.
    this._refreshTimer = setTimeout(() => this._load(), 0);
  }

  async _load() {
    const generation = ++this._generation;
    if (!this.shadowRoot.innerHTML) this._render(`<p class="muted" part="loading">${this.t("loading")}</p>`);
    try {
      const html = await this.load();
      if (generation === this._generation && html !== undefined) this._render(html);
    } catch (error) {
      if (generation === this._generation) this.showError(error);
    }
  }

  _render(html) {
    // A control the customer is on (the period toggle, a quantity) is drawn again: the focus stays on it
    // rather than falling back to the page's start, where a keyboard user would have to tab back from.
    const focused = this.shadowRoot.activeElement;
    const key = focused && FOCUS_KEYS.filter((a) => focused.hasAttribute(a)).map((a) => `[${a}="${CSS.escape(focused.getAttribute(a))}"]`)[0];
    this.removeAttribute("aria-busy");
    this.shadowRoot.innerHTML = `<style>${STYLE}</style><div part="container">${html}</div>`;
    this.afterRender?.();
    if (key) this.shadowRoot.querySelector(key)?.focus();
  }

  errorMessage(error) {
    if (error instanceof EntitleApiError) {
      if (error.status === 401 || error.status === 403) return this.t("errorToken");
      if (error.code === "CUSTOM_PRICED_PLAN") return this.t("errorCustom");
      if (error.code === "NO_PUBLISHABLE_KEY") return error.message;
      if (error.status === 404) return this.t("errorNotFound", { what: this.notFoundSubject(error) });
      if (error.code === "UNREACHABLE") return this.t("errorUnreachable");
      return this.t("errorGeneric", { message: error.message });
    }
    return this.t("errorGeneric", { message: error?.message || String(error) });
  }

  notFoundSubject(error) { return error.message.replace(/ was not found$/, "").replace(/^\w/, (c) => c.toUpperCase()); }

  showError(error) {
    const message = this.errorMessage(error);
    this._render(`<div class="error" part="error" role="alert" data-code="${escapeHtml(error.code || "ERROR")}">
      <span>${escapeHtml(message)}</span><button class="secondary" part="retry-button" data-action="retry">${this.t("retry")}</button></div>`);
    this.shadowRoot.querySelector("[data-action=retry]").addEventListener("click", () => this.refresh());
    this.dispatchEvent(new CustomEvent("entitle:error", { detail: { code: error.code, status: error.status, message }, bubbles: true, composed: true }));
  }

  /** A refused token or key in the middle of a flow (a preview, paying, a portal action): the widget's error
   * state and `entitle:error`, as when loading, so the page can give it a new token. True when it was one. */
  expired(error) {
    if (!(error instanceof EntitleApiError) || (error.status !== 401 && error.status !== 403)) return false;
    this.showError(error);
    return true;
  }

  async api(method, path, body) {
    const base = (this.getAttribute("api-url") || SERVED_FROM).replace(/\/$/, "");
    const headers = { "X-API-KEY": this.getAttribute("client-key") || "" };
    const token = this.getAttribute("customer-token");
    if (token) headers["X-CUSTOMER-TOKEN"] = token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw new EntitleApiError(0, "UNREACHABLE", error.message);
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const problem = answer.error || {};
      const unreachable = response.status >= 502 && response.status <= 504 && !problem.code;
      throw new EntitleApiError(response.status, unreachable ? "UNREACHABLE" : problem.code || "HTTP_" + response.status,
        problem.message || response.statusText);
    }
    return answer.data;
  }

  customerPath(suffix = "") {
    return `/api/v1/widgets/customers/${encodeURIComponent(this.customerId || "")}${suffix}`;
  }

  paywall() {
    const query = new URLSearchParams();
    const product = this.getAttribute("product-id");
    if (product) query.set("productId", product);
    if (this.customerId) query.set("customerId", this.customerId);
    const country = this.getAttribute("billing-country-code");
    if (country) query.set("billingCountryCode", country);
    return this.api("GET", `/api/v1/paywall?${query}`);
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }
}

// -- prices and entitlements, as a pricing page words them ---------------------------------------------

function priceFor(item, period) {
  return (item.prices || []).filter((p) => p.billingPeriod === period);
}

// The prices whose quantity a customer chooses up front (seats): usage-based and overage charges are billed
// as the usage comes, so the checkout neither asks for nor sends a quantity of them.
function boughtUpFront(prices) {
  return prices.filter((p) => p.featureId && p.billingModel === "PER_UNIT" && !p.isOverage);
}

function periodsOf(plans) {
  const periods = new Set(plans.flatMap((p) => (p.prices || []).map((price) => price.billingPeriod)));
  return ["MONTHLY", "ANNUALLY"].filter((p) => periods.has(p));
}

function describePrice(el, price, features) {
  const per = price.billingPeriod === "ANNUALLY" ? el.t("perYear") : el.t("perMonth");
  const feature = features.get(price.featureId);
  // A priced feature the item does not grant is not described in the paywall: its id is all there is.
  const unit = price.featureUnits || (feature ? (feature.featureUnits || feature.displayName) : price.featureId || "unit");
  // A subscription's price says how many units it pays for (the portal); a plan's price does not.
  const counted = price.quantity == null ? "" : `${number(price.quantity, el.locale)} ${Number(price.quantity) === 1 ? unit : price.featureUnitsPlural || feature?.featureUnitsPlural || unit}`;
  if (price.tiers && price.tiers.length) {
    let from = 1;
    const steps = price.tiers.map((tier) => {
      const range = tier.upTo == null ? `${number(from, el.locale)}+` : `${number(from, el.locale)}–${number(tier.upTo, el.locale)}`;
      const parts = [];
      if (tier.unitPrice) parts.push(`${money(tier.unitPrice.amount, tier.unitPrice.currency, el.locale, true)} / ${unit}`);
      if (tier.flatPrice) parts.push(`${money(tier.flatPrice.amount, tier.flatPrice.currency, el.locale)} flat`);
      if (tier.upTo != null) from = Number(tier.upTo) + 1;
      return `<li>${escapeHtml(range)}: ${escapeHtml(parts.join(" + "))}</li>`;
    });
    const mode = price.tiersMode === "VOLUME" ? "all units at the tier reached" : "each unit at its own tier";
    const quantity = counted ? `<div part="quantity">${escapeHtml(counted)}</div>` : "";
    return { main: "", detail: `${quantity}<div class="muted" part="tiers">${escapeHtml(unit)} pricing ${per}, ${mode}:<ul>${steps.join("")}</ul></div>` };
  }
  const amount = money(price.amount, price.currency, el.locale, true);  // a rate, or a fee (`fee` below)
  const fee = money(price.amount, price.currency, el.locale);
  if (price.billingModel === "CREDIT_BASED" && !price.creditRate && price.amount == null && !(price.tiers || []).length) {
    // A credit rate whose rate is not given (the portal's subscription prices): no money to show.
    return { main: "", detail: "" };
  }
  if (price.creditRate) {
    // A credit price has no money amount of its own: what it says is in credits.
    const credits = `${number(price.creditRate.amount, el.locale)} ${price.creditRate.currencyId}`;
    if (!price.creditGrantCadence) {
      return { main: "", detail: `<div part="unit-price">${escapeHtml(el.t("creditRate", { credits, unit }))}</div>` };
    }
    const granted = `<div part="unit-price">${escapeHtml(el.t("creditGrant", { credits, period: per }))}</div>`;
    return { main: price.amount == null ? "" : `${escapeHtml(fee)} <span class="muted">${per}</span>`, detail: granted };
  }
  if (price.isOverage) {
    // Charged only for the usage beyond the entitlement's limit (listed with the plan), not for every unit.
    return { main: "", detail: `<div part="unit-price">${escapeHtml(el.t("overage", { price: amount, unit }))}</div>` };
  }
  if (price.billingModel === "PER_UNIT" || price.featureId) {
    const block = price.blockSize && Number(price.blockSize) > 1 ? ` ${number(price.blockSize, el.locale)}` : "";
    const each = block ? `${amount} per${block} ${unit}` : amount;
    const text = counted ? el.t("unitCount", { quantity: counted, price: `${each} ${per}` }) : `${amount} per${block} ${unit} ${per}`;
    return { main: "", detail: `<div part="unit-price">${escapeHtml(text)}</div>` };
  }
  return { main: `${escapeHtml(fee)} <span class="muted">${per}</span>`, detail: "" };
}

function priceBlock(el, item, period, features) {
  if (item.pricingType === "FREE") return { main: escapeHtml(el.t("free")), detail: "" };
  if (item.pricingType === "CUSTOM") return { main: escapeHtml(el.t("customPrice")), detail: "" };
  const prices = priceFor(item, period);
  const described = prices.map((price) => describePrice(el, price, features));
  return {
    main: described.map((d) => d.main).filter(Boolean).join(" + ") || (described.length ? "" : "—"),
    detail: described.map((d) => d.detail).join(""),
  };
}

function describeEntitlement(el, e) {
  const name = e.displayNameOverride || e.displayName;
  const units = e.featureUnitsPlural || e.featureUnits || name;
  if (e.featureType === "BOOLEAN") return name;
  if (e.featureType === "ENUM") return `${name}: ${(e.enumValues || []).join(", ")}`;
  const reset = e.resetPeriod ? ` / ${e.resetPeriod.toLowerCase()}` : "";
  let amount;
  if (e.hasUnlimitedUsage) amount = `${el.t("unlimited")} ${units}${reset}`;
  else if (e.usageLimit != null) amount = `${number(e.usageLimit, el.locale)} ${units}${reset}`;
  else return name;
  // "10 seats" says what it is; "30 days" does not: a unit the feature's name does not contain is
  // preceded by that name ("Data retention: 30 days").
  const named = !name || units === name || name.toLowerCase().includes(String(units).toLowerCase());
  return named ? amount : `${name}: ${amount}`;
}

function featuresOf(paywall) {
  const map = new Map();
  for (const item of [...paywall.plans, ...paywall.addons]) {
    for (const e of item.entitlements || []) map.set(e.featureId, e);
  }
  return map;
}

// -- <entitle-pricing-table> -----------------------------------------------------------------------------

class PricingTable extends EntitleElement {
  static get observedAttributes() {
    return [...super.observedAttributes, "product-id", "billing-period", "billing-country-code"];
  }

  async load() {
    const [paywall, subscriptions] = await Promise.all([
      this.paywall(),
      this.customerId ? this.api("GET", this.customerPath("/subscriptions")) : Promise.resolve([]),
    ]);
    this.data = { paywall, subscriptions };
    if (!paywall.plans.length) {
      throw new EntitleApiError(404, "NOT_FOUND", `product '${this.getAttribute("product-id")}' was not found`);
    }
    return this.view();
  }

  get period() {
    const periods = periodsOf(this.data.paywall.plans);
    const asked = this.getAttribute("billing-period") || this._period || this.data.paywall.customer?.billingPeriod || "MONTHLY";
    return periods.includes(asked) ? asked : periods[0] || "MONTHLY";
  }

  intention(plan, plans) {
    const customer = this.data.paywall.customer;
    const scheduled = this.data.subscriptions.flatMap((s) => s.futureUpdates || []).some((u) => u.targetPackage?.id === plan.id);
    if (scheduled) return "scheduled";
    if (customer?.currentPlanId === plan.id) return "current";
    if (plan.pricingType === "CUSTOM") return "contact-sales";
    const current = plans.find((p) => p.id === customer?.currentPlanId);
    if (current && current.pricingType !== "FREE") return plan.order > current.order ? "upgrade" : "downgrade";
    if (plan.trial && customer?.status !== "IN_TRIAL" && !customer?.trialEndDate) return "start-trial";
    if (current && plan.order < current.order) return "downgrade";
    return current ? "upgrade" : "subscribe";
  }

  view() {
    const { paywall } = this.data;
    const plans = [...paywall.plans].sort((a, b) => a.order - b.order);
    const features = featuresOf(paywall);
    const period = this.period;
    const byId = new Map(plans.map((p) => [p.id, p]));
    const periods = periodsOf(plans);
    const toggle = periods.length > 1
      ? `<div class="toggle" part="period-toggle" role="group" aria-label="${escapeHtml(this.t("billingPeriod"))}">${periods.map((p) => `<button type="button" part="period-option" data-period="${p}" aria-pressed="${p === period}">${this.t(p === "MONTHLY" ? "monthly" : "annually")}</button>`).join("")}</div>`
      : "";
    const labels = { current: "currentPlan", scheduled: "scheduled", "contact-sales": "contactSales", "start-trial": "startTrial", upgrade: "upgrade", downgrade: "downgrade", subscribe: "subscribe" };
    const cards = plans.map((plan, index) => {
      const intention = this.intention(plan, plans);
      const price = priceBlock(this, plan, period, features);
      const base = plan.basePlanId ? byId.get(plan.basePlanId) : null;
      const own = (plan.entitlements || []).filter((e) => !base || !e.isInherited);
      const addons = paywall.addons.filter((a) => plan.compatibleAddonIds.includes(a.id));
      // Offered only when choosing the plan starts it (`intention`): not on the plan being trialed.
      const trial = intention === "start-trial" && plan.pricingType === "PAID"
        ? `<span class="badge" part="trial-badge">${plan.trial.units === "MONTH" ? this.t("trialBadgeMonths", { months: plan.trial.duration }) : this.t("trialBadge", { days: plan.trial.duration })}</span>` : "";
      const current = intention === "current" ? `<span class="badge" part="current-badge">${this.t("currentPlan")}</span>` : "";
      return `<article class="plan ${intention === "current" ? "current" : ""}" part="plan${intention === "current" ? " plan-current" : ""}" data-plan-id="${escapeHtml(plan.id)}">
        <div class="row"><h3 part="plan-name" id="plan-name-${index}">${escapeHtml(plan.displayName)}</h3>${current}${trial}</div>
        ${plan.description ? `<div class="muted">${escapeHtml(plan.description)}</div>` : ""}
        <div class="price" part="price" data-testid="price">${price.main}</div>${price.detail}
        ${base ? `<div part="inherits">${escapeHtml(this.t("everythingIn", { plan: base.displayName }))}</div>` : ""}
        <ul part="entitlements">${own.map((e) => `<li>${escapeHtml(describeEntitlement(this, e))}</li>`).join("")}</ul>
        ${addons.length ? `<div class="muted" part="addons">${this.t("addons")}: ${addons.map((a) => `${escapeHtml(a.displayName)} (${priceBlock(this, a, period, features).main || "—"})`).join(", ")}</div>` : ""}
        <button type="button" part="plan-button" aria-describedby="plan-name-${index}" data-intention="${intention}" ${intention === "current" || intention === "scheduled" ? "disabled" : ""}>${this.t(labels[intention])}</button>
      </article>`;
    });
    return `${toggle}<div class="plans" part="plans">${cards.join("")}</div>`;
  }

  afterRender() {
    if (!this.data) return;
    for (const button of this.shadowRoot.querySelectorAll("[data-period]")) {
      button.addEventListener("click", () => {
        this._period = button.dataset.period;
        if (this.hasAttribute("billing-period")) this.setAttribute("billing-period", this._period);
        else this._render(this.view());
      });
    }
    for (const button of this.shadowRoot.querySelectorAll("[part~=plan-button]")) {
      button.addEventListener("click", () => {
        const planId = button.closest("[data-plan-id]").dataset.planId;
        const plan = this.data.paywall.plans.find((p) => p.id === planId);
        this.emit("entitle:plan-selected", { planId, plan, billingPeriod: this.period, intention: button.dataset.intention });
      });
    }
  }
}

// -- <entitle-checkout> ------------------------------------------------------------------------------------

const stripeScripts = new Map();

function loadStripeJs(url) {
  // Stripe.js is the one script a widget loads from elsewhere: from the URL the server gives (Stripe's own,
  // or the local emulator's), once per page.
  if (!stripeScripts.has(url)) {
    stripeScripts.set(url, new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => resolve(window.Stripe);
      script.onerror = () => { stripeScripts.delete(url); reject(new EntitleApiError(0, "UNREACHABLE", "Stripe.js did not load")); };
      document.head.appendChild(script);
    }));
  }
  return stripeScripts.get(url);
}

class Checkout extends EntitleElement {
  static get observedAttributes() {
    return [...super.observedAttributes, "plan-id", "billing-period", "billing-country-code", "payment", "success-url", "cancel-url", "stripe-publishable-key"];
  }

  async load() {
    this._teardownCard();
    const planId = this.getAttribute("plan-id");
    if (!planId) return `<p class="muted" part="empty">${this.t("choosePlan")}</p>`;
    const [paywall, customer] = await Promise.all([
      this.paywall(),
      this.customerId ? this.api("GET", this.customerPath()) : Promise.resolve(null),
    ]);
    const plan = paywall.plans.find((p) => p.id === planId);
    if (!plan) throw new EntitleApiError(404, "NOT_FOUND", `plan '${planId}' was not found`);
    if (plan.pricingType === "CUSTOM") throw new EntitleApiError(400, "CUSTOM_PRICED_PLAN", "custom-priced plan");
    const periods = periodsOf([plan]);
    const asked = this.getAttribute("billing-period");
    this.state = {
      paywall, plan, features: featuresOf(paywall),
      period: periods.includes(asked) ? asked : periods[0] || null,
      addons: {}, charges: {}, promotionCode: "", promotionError: "", intent: null, message: "", busy: false,
    };
    // A card on file pays for a change of plan too: the customer types one only when it has none (or wants another).
    const saved = customer?.defaultPaymentMethod;
    this.state.savedCard = saved?.billingId ? saved : null;
    this.state.useSaved = Boolean(this.state.savedCard);
    return this.view();
  }

  view() {
    const { plan, paywall, features, period } = this.state;
    const periods = periodsOf([plan]);
    const perUnit = boughtUpFront(priceFor(plan, period));
    const addons = paywall.addons.filter((a) => plan.compatibleAddonIds.includes(a.id));
    const paid = plan.pricingType === "PAID";
    return `<div class="card-box" part="checkout">
      <h3 part="title">${escapeHtml(this.t("checkoutTitle", { plan: plan.displayName }))}</h3>
      ${periods.length > 1 ? `<label>${this.t("billingPeriod")} <select data-field="period" part="period-select">${periods.map((p) => `<option value="${p}" ${p === period ? "selected" : ""}>${this.t(p === "MONTHLY" ? "monthly" : "annually")}</option>`).join("")}</select></label>` : ""}
      ${perUnit.map((p) => {
        const f = features.get(p.featureId);
        const least = Math.max(1, Number(p.minUnitQuantity) || 1);
        const most = p.maxUnitQuantity == null ? "" : `max="${Number(p.maxUnitQuantity)}"`;
        return `<label>${escapeHtml(f?.featureUnitsPlural || f?.displayName || p.featureId)} <input type="number" min="${least}" ${most} step="1" value="${this.quantityOf(p)}" data-charge="${escapeHtml(p.featureId)}" part="quantity-input"></label>`;
      }).join("")}
      ${addons.length ? `<fieldset part="addons"><legend>${this.t("addons")}</legend>${addons.map((a) => `<label>${escapeHtml(a.displayName)} (${priceBlock(this, a, period, features).main}) <input type="number" min="0" step="1" ${a.maxQuantity ? `max="${a.maxQuantity}"` : ""} value="${this.state.addons[a.id] || 0}" data-addon="${escapeHtml(a.id)}" part="addon-input" aria-label="${escapeHtml(a.displayName)} ${this.t("quantity")}"></label>`).join("<br>")}</fieldset>` : ""}
      ${paid ? `<div part="promotion"><label>${this.t("promotionCode")} <input data-field="promotionCode" part="promotion-input" value="${escapeHtml(this.state.promotionCode)}"></label>
        <button type="button" class="secondary" part="apply-code-button" data-action="apply-code">${this.t("applyCode")}</button>
        <p class="error" part="error promotion-error" role="alert" data-testid="promotion-error" hidden></p></div>` : ""}
      <div part="summary" data-testid="summary" aria-live="polite"><p class="muted">${this.t("loading")}</p></div>
      ${paid && this.getAttribute("payment") !== "hosted" && this.state.useSaved ? `<div class="row" part="saved-card"><span data-testid="saved-card">${escapeHtml(this.t("card"))}: ${escapeHtml((this.state.savedCard.cardBrand || "card").toUpperCase())} •••• ${escapeHtml(this.state.savedCard.cardLast4Digits || "")}</span><button type="button" class="secondary" data-action="other-card">${this.t("otherCard")}</button></div>` : ""}
      ${paid && this.getAttribute("payment") !== "hosted" && !this.state.useSaved ? `<div part="card-field"><div>${this.t("card")}</div><slot name="card"></slot><p class="muted" data-testid="provider-note" hidden>${this.t("noProvider")}</p></div>` : ""}
      <div class="error" part="error payment-error" role="alert" data-testid="payment-error" hidden></div>
      <button type="button" part="pay-button" data-action="pay">${this.t("pay")}</button>
    </div>`;
  }

  afterRender() {
    if (!this.state || !this.shadowRoot.querySelector("[data-action=pay]")) return;
    const root = this.shadowRoot;
    root.querySelector("[data-field=period]")?.addEventListener("change", (e) => { this.state.period = e.target.value; this._render(this.view()); });
    for (const input of root.querySelectorAll("[data-addon]")) {
      input.addEventListener("input", () => {
        this.state.addons[input.dataset.addon] = Math.max(0, Number(input.value) || 0);
        input.setAttribute("aria-invalid", String(!input.checkValidity()));
        this.updateSummary();
      });
    }
    for (const input of root.querySelectorAll("[data-charge]")) {
      input.addEventListener("input", () => {
        // Priced as typed: a quantity outside the price's range is said when paying (`pay`), not changed.
        this.state.charges[input.dataset.charge] = Math.max(1, Number(input.value) || 1);
        input.setAttribute("aria-invalid", String(!input.checkValidity()));
        this.updateSummary();
      });
    }
    const applyCode = () => {
      const code = root.querySelector("[data-field=promotionCode]").value.trim();
      if (code === this.state.promotionCode && !this.state.promotionError) return;
      this.state.promotionCode = code;
      root.querySelector("[data-testid=payment-error]").hidden = true;  // it may say to correct the code
      this.updateSummary();
    };
    root.querySelector("[data-field=promotionCode]")?.addEventListener("change", applyCode);
    root.querySelector("[data-action=apply-code]")?.addEventListener("click", applyCode);
    root.querySelector("[data-action=pay]").addEventListener("click", () => this.pay());
    this.updateSummary();
    root.querySelector("[data-action=other-card]")?.addEventListener("click", () => { this.state.useSaved = false; this._render(this.view()); });
    if (this.state.plan.pricingType === "PAID" && this.getAttribute("payment") !== "hosted" && !this.state.useSaved) this.mountCard();
  }

  /** The quantity chosen of a per-unit price: what the customer typed, else the least the price allows. */
  quantityOf(price) {
    return this.state.charges[price.featureId] || Math.max(1, Number(price.minUnitQuantity) || 1);
  }

  choice({ withCode = true } = {}) {
    const { plan, period, addons, charges, promotionCode, paywall } = this.state;
    // The country whose prices the paywall showed (the customer's subscribed one wins over the attribute).
    const country = paywall.billingCountryCode || this.getAttribute("billing-country-code");
    return {
      ...(withCode && promotionCode ? { promotionCode } : {}),
      planId: plan.id,
      ...(period ? { billingPeriod: period } : {}),
      addons: Object.entries(addons).filter(([, q]) => q > 0).map(([id, quantity]) => ({ id, quantity })),
      billableFeatures: boughtUpFront(priceFor(plan, period)).map((p) => ({ featureId: p.featureId, quantity: this.quantityOf(p) })),
      ...(country ? { billingCountryCode: country } : {}),
    };
  }

  async updateSummary() {
    const generation = (this._summaryGeneration = (this._summaryGeneration || 0) + 1);
    const target = this.shadowRoot.querySelector("[part=summary]");
    try {
      let preview;
      let promotionError = "";
      try {
        preview = await this.api("POST", this.customerPath("/preview"), this.choice());
      } catch (error) {
        // A code the provider refuses is said beside its field; the summary is then the one without it.
        if (!this.state.promotionCode || !PROMOTION_REFUSED.has(error.code)) throw error;
        promotionError = this.t("promotionInvalid", { message: error.message });
        preview = await this.api("POST", this.customerPath("/preview"), this.choice({ withCode: false }));
      }
      if (generation !== this._summaryGeneration || !target.isConnected) return;
      this.state.promotionError = promotionError;
      const hint = this.shadowRoot.querySelector("[data-testid=promotion-error]");
      if (hint) { hint.textContent = promotionError; hint.hidden = !promotionError; }
      this.shadowRoot.querySelector("[data-field=promotionCode]")?.setAttribute("aria-invalid", String(Boolean(promotionError)));
      const now = preview.immediateInvoice;
      const next = preview.recurringInvoice;
      const cur = now.currency;
      const rows = (now.lines || []).map((l) => `<tr><td>${escapeHtml(l.description)}${l.quantity && Number(l.quantity) !== 1 ? ` × ${number(l.quantity, this.locale)}` : ""}</td><td>${money(l.subTotal, l.currency, this.locale)}</td></tr>`);
      rows.push(`<tr><td>${this.t("subtotal")}</td><td data-testid="subtotal">${money(now.subTotal, cur, this.locale)}</td></tr>`);
      if (now.discount && Number(now.discount)) rows.push(`<tr part="discount-row"><td>${this.t("discount")}${this.state.promotionCode && !promotionError ? ` (${escapeHtml(this.state.promotionCode)})` : ""}</td><td data-testid="discount">−${money(now.discount, cur, this.locale)}</td></tr>`);
      if (now.tax && Number(now.tax)) rows.push(`<tr><td>${this.t("tax")}</td><td>${money(now.tax, cur, this.locale)}</td></tr>`);
      rows.push(`<tr class="total"><td>${this.t("dueToday")}</td><td data-testid="due-today">${money(now.total, cur, this.locale)}</td></tr>`);
      const period = this.state.period === "ANNUALLY" ? this.t("perYear") : this.t("perMonth");
      const then = next ? `<p class="muted">${escapeHtml(this.t("thenRecurring", { amount: money(next.total, next.currency, this.locale), period }))}</p>` : "";
      const waits = preview.hasScheduledUpdates && preview.scheduledFor
        ? `<p class="muted" part="scheduled-note" data-testid="scheduled-note">${escapeHtml(this.t("dueAtPeriodEnd", { date: date(preview.scheduledFor, this.locale) }))}</p>` : "";
      target.innerHTML = `<h4>${this.t("summary")}</h4><table class="summary">${rows.join("")}</table>${waits}${then}`;
    } catch (error) {
      if (generation !== this._summaryGeneration || this.expired(error)) return;
      target.innerHTML = `<p class="error" part="error" role="alert">${escapeHtml(this.errorMessage(error))}</p>`;
    }
  }

  outcomeText(outcome) {
    const plan = this.state.plan.displayName;
    // A change that waits answers the current subscription, which names the change and its date.
    const change = outcome.isScheduled && (outcome.subscription?.futureUpdates || []).find((u) => u.targetPackage?.id === this.state.plan.id);
    if (change) return this.t("changeScheduled", { plan, date: date(change.scheduledExecutionTime, this.locale) });
    // Subscribed only once the provider has taken the payment (or nothing is due before a trial's end).
    const status = outcome.subscription?.status;
    return status === "ACTIVE" || status === "IN_TRIAL" ? this.t("completed", { plan }) : this.t("paymentConfirming", { plan });
  }

  _cardSlot() {
    // Stripe Elements cannot live in a shadow root: the card field is a light-DOM child slotted into ours.
    let holder = this.querySelector(":scope > [data-entitle-card]");
    if (!holder) {
      holder = document.createElement("div");
      holder.setAttribute("slot", "card");
      holder.setAttribute("data-entitle-card", "");
      this.appendChild(holder);
    }
    return holder;
  }

  _teardownCard() {
    this._card?.destroy?.();
    this._card = null;
    this.querySelector(":scope > [data-entitle-card]")?.remove();
  }

  beforeRefresh() {
    // A card typed for the old plan must not pay for the new one.
    this._teardownCard();
    for (const button of this.shadowRoot.querySelectorAll("[data-action=pay]")) button.disabled = true;
  }

  async mountCard() {
    const generation = this._generation;
    try {
      const intent = await this.newIntent();
      if (!intent || generation !== this._generation) return;
      const Stripe = await loadStripeJs(intent.stripeJsUrl);
      if (generation !== this._generation) return;
      const key = this.getAttribute("stripe-publishable-key") || intent.publishableKey;
      if (!key) throw new EntitleApiError(409, "NO_PUBLISHABLE_KEY", this.t("errorNoPublishableKey"));
      this._stripe = Stripe(key);
      this._teardownCard();
      this._card = this._stripe.elements().create("card");
      this._card.mount(this._cardSlot());
    } catch (error) {
      if (!this.expired(error)) this.paymentError(error);
    }
  }

  async newIntent() {
    try {
      this.state.intent = await this.api("POST", this.customerPath("/setup-intent"));
    } catch (error) {
      if (error.code !== "FAILED_PRECONDITION") throw error;
      this.state.intent = null;
      this.shadowRoot.querySelector("[data-testid=provider-note]")?.removeAttribute("hidden");
    }
    return this.state.intent;
  }

  paymentError(error) {
    const box = this.shadowRoot.querySelector("[data-testid=payment-error]");
    if (!box) return;
    box.textContent = typeof error === "string" ? error : this.errorMessage(error);
    box.hidden = false;
  }

  async pay() {
    if (this.state.busy) return;
    const button = this.shadowRoot.querySelector("[data-action=pay]");
    const box = this.shadowRoot.querySelector("[data-testid=payment-error]");
    box.hidden = true;
    this.state.busy = true;
    button.disabled = true;
    button.textContent = this.t("paying");
    try {
      if (this.state.promotionError) { this.paymentError(this.t("promotionFix")); return; }
      const outOfRange = [...this.shadowRoot.querySelectorAll("[data-charge]")].find((input) => !input.checkValidity());
      const addonOutOfRange = [...this.shadowRoot.querySelectorAll("[data-addon]")].find((input) => !input.checkValidity());
      if (addonOutOfRange && !outOfRange) {
        const addon = this.state.paywall.addons.find((a) => a.id === addonOutOfRange.dataset.addon);
        const name = addon?.displayName || addonOutOfRange.dataset.addon;
        this.paymentError(addon?.maxQuantity ? this.t("addonRange", { most: addon.maxQuantity, addon: name }) : this.t("addonWhole", { addon: name }));
        addonOutOfRange.focus();
        return;
      }
      if (outOfRange) {
        const price = boughtUpFront(priceFor(this.state.plan, this.state.period)).find((p) => p.featureId === outOfRange.dataset.charge);
        const feature = this.state.features.get(outOfRange.dataset.charge);
        const units = feature?.featureUnitsPlural || feature?.displayName || outOfRange.dataset.charge;
        const least = Math.max(1, Number(price?.minUnitQuantity) || 1);
        this.paymentError(price?.maxUnitQuantity == null ? this.t("quantityAtLeast", { least, units }) : this.t("quantityRange", { least, most: price.maxUnitQuantity, units }));
        outOfRange.focus();
        return;
      }
      const body = this.choice();
      if (this.state.plan.pricingType === "PAID" && this.getAttribute("payment") === "hosted") {
        body.checkoutOptions = { successUrl: this.getAttribute("success-url") || location.href, cancelUrl: this.getAttribute("cancel-url") || location.href };
      } else if (this.state.plan.pricingType === "PAID" && !this.state.useSaved && this.state.intent && this._card) {
        const result = await this._stripe.confirmCardSetup(this.state.intent.clientSecret, { payment_method: { card: this._card } });
        if (result.error) {
          // A declined card cancels the SetupIntent: a fresh one lets the customer try another card.
          this.paymentError(result.error.message || String(result.error));
          await this.newIntent();
          return;
        }
        await this.api("POST", this.customerPath("/payment-method"), { paymentMethodId: result.setupIntent.payment_method });
      }
      const outcome = await this.api("POST", this.customerPath("/subscriptions"), body);
      if (outcome.status === "PAYMENT_REQUIRED" && outcome.checkoutUrl) {
        button.textContent = this.t("redirecting");
        this.emit("entitle:checkout-redirect", { url: outcome.checkoutUrl, subscriptionId: outcome.id });
        location.assign(outcome.checkoutUrl);
        return;
      }
      this._teardownCard();
      this._render(`<div class="card-box" part="checkout-completed" data-testid="completed" data-status="${escapeHtml(outcome.subscription?.status || "")}"><p>${escapeHtml(this.outcomeText(outcome))}</p></div>`);
      this.emit("entitle:checkout-completed", { subscriptionId: outcome.id, subscription: outcome.subscription, planId: this.state.plan.id, isScheduled: outcome.isScheduled });
    } catch (error) {
      if (!this.expired(error)) this.paymentError(error);
    } finally {
      this.state.busy = false;
      if (button.isConnected) { button.disabled = false; button.textContent = this.t("pay"); }
    }
  }
}

// -- <entitle-customer-portal> -----------------------------------------------------------------------------

class CustomerPortal extends EntitleElement {
  static get observedAttributes() {
    return [...super.observedAttributes, "product-id", "billing-country-code"];
  }

  async load() {
    const enc = encodeURIComponent(this.customerId || "");
    const [customer, subscriptions, entitlements, paywall, invoices] = await Promise.all([
      this.api("GET", this.customerPath()),
      this.api("GET", this.customerPath("/subscriptions")),
      this.api("GET", `/api/v1/customers/${enc}/entitlements`),
      this.paywall(),
      this.api("GET", this.customerPath("/invoices")).catch(() => []),
    ]);
    this.data = { customer, subscriptions, entitlements: entitlements.entitlements, paywall, invoices };
    return this.view();
  }

  view() {
    const { customer, subscriptions, entitlements, paywall, invoices } = this.data;
    const items = new Map([...paywall.plans, ...paywall.addons].map((p) => [p.id, p]));
    const features = featuresOf(paywall);
    const subs = subscriptions.map((s) => {
      // The server prices each subscription (its plan version, period, country and overrides), whatever
      // its product: the page's paywall knows the plans of one product only.
      const plan = s.plan ? { ...s.plan, pricingType: s.pricingType } : items.get(s.planId);
      const price = plan ? priceBlock(this, plan, s.billingPeriod || "MONTHLY", features) : { main: "", detail: "" };
      // What a period costs, add-ons and seats included, is the server's sum (`recurringPrice`): the
      // plan's prices alone leave them out.
      const paid = s.recurringPrice && s.pricingType === "PAID" && Number(s.recurringPrice.amount) > 0;
      if (paid) {
        // With add-ons the plan's own price stays in view, beside the add-ons listed below.
        if (price.main && (s.addons || []).length) price.detail = `<div class="muted" part="plan-price">${escapeHtml(plan.displayName || s.planId)}: ${price.main}</div>${price.detail}`;
        price.main = `${escapeHtml(money(s.recurringPrice.amount, s.recurringPrice.currency, this.locale))} <span class="muted">${this.t(s.billingPeriod === "ANNUALLY" ? "perYear" : "perMonth")}</span>`;
      }
      const trialDays = s.status === "IN_TRIAL" && s.trialEndDate ? Math.max(0, Math.ceil((new Date(s.trialEndDate) - Date.now()) / 86400000)) : null;
      const updates = (s.futureUpdates || []).map((u) => `<div class="row" part="scheduled-change" data-testid="scheduled-change">
          <span>${escapeHtml(this.t("scheduledChange", { plan: s.planNames?.[u.targetPackage?.id] || items.get(u.targetPackage?.id)?.displayName || u.targetPackage?.id || u.subscriptionScheduleType, date: date(u.scheduledExecutionTime, this.locale) }))}</span>
          <button class="secondary" part="cancel-scheduled-button" data-action="cancel-scheduled" data-subscription="${escapeHtml(s.id)}">${this.t("cancelScheduled")}</button></div>`).join("");
      const addons = (s.addons || []).map((a) => `${escapeHtml(s.addonNames?.[a.id] || items.get(a.id)?.displayName || a.id)} × ${a.quantity}`).join(", ");
      const ends = s.cancellationDate || s.endDate;
      return `<div class="card-box" part="subscription" data-testid="subscription" data-plan-id="${escapeHtml(s.planId)}" data-status="${escapeHtml(s.status)}">
        <div class="row"><h4 part="plan-name">${escapeHtml(plan?.displayName || s.planId)}</h4><span class="price" part="price" data-testid="subscription-price">${price.main}</span></div>
        ${price.detail}
        ${trialDays !== null ? `<span class="badge" part="trial-countdown" data-testid="trial-countdown">${this.t(trialDays === 1 ? "trialEndsOne" : "trialEnds", { days: trialDays })}</span>` : ""}
        ${s.status === "PAYMENT_PENDING" ? `<span class="badge" part="payment-pending" data-testid="payment-pending">${this.t("paymentPending")}</span>` : ""}
        ${ends ? `<div class="muted">${escapeHtml(this.t("cancelsOn", { date: date(ends, this.locale) }))}</div>`
          : s.currentBillingPeriodEnd && s.pricingType === "PAID" ? `<div class="muted" part="next-billing">${escapeHtml(this.t("nextBilling", { date: date(s.currentBillingPeriodEnd, this.locale) }))}</div>` : ""}
        ${addons ? `<div>${this.t("addons")}: ${addons}</div>` : ""}
        ${updates}
        <div class="row" part="actions">
          <button class="secondary" part="change-plan-button" data-action="change-plan" data-subscription="${escapeHtml(s.id)}">${this.t("changePlan")}</button>
          ${!ends && s.pricingType !== "FREE" ? `<button class="secondary" part="cancel-button" data-action="cancel" data-subscription="${escapeHtml(s.id)}">${this.t("cancelSubscription")}</button>` : ""}
        </div>
        <div class="row" part="confirm" data-confirm="${escapeHtml(s.id)}" hidden><span>${this.t("confirmCancel")}</span>
          <span><button part="confirm-cancel-button" data-action="confirm-cancel" data-subscription="${escapeHtml(s.id)}">${this.t("confirmYes")}</button>
          <button class="secondary" data-action="keep" data-subscription="${escapeHtml(s.id)}">${this.t("confirmNo")}</button></span></div>
      </div>`;
    }).join("");
    const metered = entitlements.filter((e) => e.isGranted && e.feature?.featureType === "NUMBER" && e.currentUsage != null && (e.usageLimit != null || e.hasUnlimitedUsage));
    const bars = metered.map((e) => {
      const used = Number(e.currentUsage);
      const limit = e.hasUnlimitedUsage ? null : Number(e.usageLimit);
      const share = limit ? Math.min(100, (used / limit) * 100) : 0;
      const units = e.feature.featureUnitsPlural || e.feature.displayName;
      const reset = e.usagePeriodEnd ? ` · ${this.t("resetsOn", { date: date(e.usagePeriodEnd, this.locale) })}` : "";
      return `<div part="usage" data-testid="usage" data-feature-id="${escapeHtml(e.feature.id)}" data-used="${used}">
        <div class="row"><span>${escapeHtml(e.feature.displayName)}</span><span class="muted">${number(used, this.locale)} / ${limit === null ? this.t("unlimited") : number(limit, this.locale)} ${escapeHtml(units)}${escapeHtml(reset)}</span></div>
        <div class="bar ${limit !== null && used > limit ? "over" : ""}" part="usage-bar" role="progressbar" aria-label="${escapeHtml(e.feature.displayName)}" aria-valuenow="${used}" ${limit !== null ? `aria-valuemax="${limit}"` : ""}><span style="width:${share}%"></span></div></div>`;
    }).join("");
    const invoiceRows = invoices.map((i) => `<tr part="invoice"><td>${date(i.issueDate, this.locale)}</td><td>${escapeHtml(i.invoiceNumber || i.invoiceId)}</td>
      <td>${money(i.total, i.currency, this.locale)}</td><td>${escapeHtml(i.state)}</td>
      <td>${i.pdfUrl ? `<a href="${escapeHtml(i.pdfUrl)}" target="_blank" rel="noopener" part="invoice-link">${this.t("download")}</a>` : i.hostedInvoiceUrl ? `<a href="${escapeHtml(i.hostedInvoiceUrl)}" target="_blank" rel="noopener" part="invoice-link">${this.t("view")}</a>` : ""}</td></tr>`).join("");
    const method = customer.defaultPaymentMethod;
    const card = method && (method.cardLast4Digits || method.billingId)
      ? `<span data-testid="payment-method">${escapeHtml((method.cardBrand || method.type || "card").toUpperCase())} •••• ${escapeHtml(method.cardLast4Digits || "")} ${method.cardExpiryMonth ? escapeHtml(this.t("expires", { month: String(method.cardExpiryMonth).padStart(2, "0"), year: method.cardExpiryYear })) : ""}</span>`
      : `<span class="muted">${this.t("noPaymentMethod")}</span>`;
    return `<section part="subscriptions"><h4>${this.t("subscriptions")}</h4>${subs}</section>
      ${bars ? `<section part="usage-section"><h4>${this.t("usage")}</h4>${bars}</section>` : ""}
      <section part="payment-method"><h4>${this.t("paymentMethod")}</h4><div class="row">${card}
        <button class="secondary" part="update-payment-button" data-action="update-payment">${this.t("update")}</button></div>
        <div class="error" part="error" role="alert" data-testid="portal-error" hidden></div></section>
      <section part="invoices"><h4>${this.t("invoices")}</h4>${invoiceRows ? `<table>${invoiceRows}</table>` : `<p class="muted">${this.t("noInvoices")}</p>`}</section>`;
  }

  afterRender() {
    if (!this.data) return;
    const root = this.shadowRoot;
    const confirmOf = (id) => root.querySelector(`[data-confirm="${CSS.escape(id)}"]`);
    const act = async (work) => {
      try { await work(); this.refresh(); } catch (error) {
        if (this.expired(error)) return;
        const box = root.querySelector("[data-testid=portal-error]");
        if (box) { box.textContent = this.errorMessage(error); box.hidden = false; }
      }
    };
    for (const button of root.querySelectorAll("[data-action]")) {
      const id = button.dataset.subscription;
      const path = id ? this.customerPath(`/subscriptions/${encodeURIComponent(id)}`) : "";
      button.addEventListener("click", () => {
        switch (button.dataset.action) {
          case "cancel": confirmOf(id).hidden = false; break;
          case "keep": confirmOf(id).hidden = true; break;
          case "confirm-cancel": act(() => this.api("POST", `${path}/cancel`)); break;
          case "cancel-scheduled": act(() => this.api("DELETE", `${path}/future-update/schedule`)); break;
          case "change-plan": this.emit("entitle:change-plan", { subscriptionId: id }); break;
          case "update-payment": act(async () => {
            const session = await this.api("POST", this.customerPath("/portal-session"), { returnUrl: location.href });
            location.assign(session.url);
          }); break;
        }
      });
    }
  }
}

const definitions = [["entitle-pricing-table", PricingTable], ["entitle-checkout", Checkout], ["entitle-customer-portal", CustomerPortal]];
for (const [name, element] of definitions) {
  if (!customElements.get(name)) customElements.define(name, element);
}

export { PricingTable, Checkout, CustomerPortal };
