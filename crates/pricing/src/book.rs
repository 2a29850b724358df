//! The price book: every catalog, overrides, conversions, plan and thresholds, behind one `Arc`.

use std::sync::Arc;

use genroute_core::hash::FxHashMap as HashMap;
use genroute_core::{
    Charge, CostSource, Currency, Decimal, ExchangeRate, Generation, Job, Modality, ModelRef, Money,
    MoneyError, ProviderId, Quote, QuoteLine, QuoteSource, Rounding, RoundingMode, Usage,
};

use crate::catalog::{Catalog, DEFAULT_LIST, ModelPrice, PriceList, key_segment};
use crate::error::{CatalogError, CatalogProblem, PricingError};
use crate::rule::{Facts, Fail, NoLines, Sink, mul, num, rounding_text};

/// A subscription plan and its compute discount (seed 000).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Plan {
    /// Daily credit allowance, no discount.
    Free,
    /// Standard rate.
    Starter,
    /// 10 % off.
    Pro,
    /// 20 % off.
    Max,
    /// 30 % off (plus pay-as-you-go).
    Enterprise,
}

impl Plan {
    /// The discount in percent.
    pub fn discount_percent(self) -> Decimal {
        Decimal::from(match self {
            Plan::Free | Plan::Starter => 0,
            Plan::Pro => 10,
            Plan::Max => 20,
            Plan::Enterprise => 30,
        })
    }

    /// The plan's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "Free",
            Plan::Starter => "Starter",
            Plan::Pro => "Pro",
            Plan::Max => "Max",
            Plan::Enterprise => "Enterprise",
        }
    }
}

/// The figures of a quote without its explanation: what [`PriceBook::quote_amount`] returns.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QuoteAmount {
    /// Cost in the price list's currency.
    pub cost: Money,
    /// The same in compute units, when a conversion is configured.
    pub cost_cu: Option<Money>,
    /// Whether the cost crosses the configured threshold for the job's modality.
    pub high_cost: bool,
}

/// The default rounding of converted compute units: up, to 4 decimal places (a hold never falls short).
pub const DEFAULT_CU_ROUNDING: Rounding = Rounding {
    decimal_places: 4,
    mode: RoundingMode::Up,
};

/// Compute units per US dollar in [`PriceBook::with_builtin`]: seed 001 prices an SDXL image (30 steps,
/// 1024×1024) at $0.032 and seed 002 at 5 CU, so 1 USD = 5 / 0.032 = 156.25 CU.
pub const BUILTIN_CU_PER_USD: Decimal = Decimal::from_parts(15625, 0, 0, false, 2);

struct ListInfo {
    name: String,
    currency: Currency,
    code: String,
    plan_discounts: bool,
}

struct Entry {
    price: Arc<ModelPrice>,
    list: Arc<ListInfo>,
}

struct Inner {
    entries: HashMap<ModelRef, Entry>,
    /// Rates keyed by the currency they convert from; each leads to CU, possibly through USD.
    rates: HashMap<Currency, ExchangeRate>,
    cu_rounding: Rounding,
    plan: Option<Plan>,
    byok: HashMap<ProviderId, Money>,
    thresholds: HashMap<Modality, Money>,
    catalogs: Vec<(ProviderId, Vec<String>)>,
}

/// Every price genroute knows, ready to quote. Cheap to clone (an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct PriceBook {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PriceBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceBook")
            .field("models", &self.inner.entries.len())
            .field("catalogs", &self.inner.catalogs)
            .field("plan", &self.inner.plan)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PriceBook`]. Settings are checked by [`PriceBookBuilder::build`].
#[derive(Default)]
pub struct PriceBookBuilder {
    catalogs: Vec<Catalog>,
    overrides: Vec<(String, String)>,
    rates: Vec<ExchangeRate>,
    cu_rounding: Option<Rounding>,
    plan: Option<Plan>,
    byok: Vec<(ProviderId, Money)>,
    thresholds: Vec<(Modality, Money)>,
    selections: Vec<(ProviderId, String)>,
}

impl PriceBookBuilder {
    /// Adds a provider's catalog. Two catalogs may add to the same provider and list, but may not price the
    /// same model in the same list twice.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalogs.push(catalog);
        self
    }

    /// Adds several catalogs.
    pub fn catalogs(mut self, catalogs: impl IntoIterator<Item = Catalog>) -> Self {
        self.catalogs.extend(catalogs);
        self
    }

    /// A TOML fragment in the catalog format whose models replace (or add to) the catalogs' prices.
    /// Applied after every catalog, in the order given. `origin` names it in errors.
    pub fn overrides_toml(mut self, text: impl Into<String>, origin: impl Into<String>) -> Self {
        self.overrides.push((text.into(), origin.into()));
        self
    }

    /// A conversion towards compute units: `X → CU`, or `credits:<p> → USD` (chained with `USD → CU`).
    /// Replaces any rate from the same currency, including a catalog's `usd_per_unit`.
    pub fn conversion(mut self, rate: ExchangeRate) -> Self {
        self.rates.push(rate);
        self
    }

    /// How converted CU amounts are rounded (default [`DEFAULT_CU_ROUNDING`]).
    pub fn cu_rounding(mut self, rounding: Rounding) -> Self {
        self.cu_rounding = Some(rounding);
        self
    }

    /// The plan whose discount applies to price lists declaring `plan_discounts = true`.
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// A per-asset post-processing fee added to every quote of `provider` (bring-your-own-key routes). The
    /// fee's currency must be the currency of the provider's price lists it meets.
    pub fn byok_fee(mut self, provider: ProviderId, fee_per_asset: Money) -> Self {
        self.byok.push((provider, fee_per_asset));
        self
    }

    /// Flags quotes of a modality costing at least `threshold` (in the list's currency, or in CU).
    pub fn high_cost_threshold(mut self, modality: Modality, threshold: Money) -> Self {
        self.thresholds.push((modality, threshold));
        self
    }

    /// Searches this named price list of the provider first (e.g. `("scenario", "legacy_usd")`).
    pub fn select_catalog(mut self, provider: ProviderId, list: impl Into<String>) -> Self {
        self.selections.push((provider, list.into()));
        self
    }

    /// Validates everything and builds the book.
    pub fn build(self) -> Result<PriceBook, PricingError> {
        // provider → lists in lookup order
        let mut providers: Vec<(ProviderId, Vec<PriceList>)> = Vec::new();
        for cat in self.catalogs {
            let idx = match providers.iter().position(|(p, _)| *p == cat.provider) {
                Some(i) => i,
                None => {
                    providers.push((cat.provider.clone(), Vec::new()));
                    providers.len() - 1
                }
            };
            let lists = &mut providers[idx].1;
            for list in cat.lists {
                merge_list(lists, list, &cat.origin, false, false)?;
            }
        }
        for (text, origin) in &self.overrides {
            let cat = Catalog::override_from_toml(text, origin)?;
            let explicit = !(cat.lists.len() == 1 && cat.lists[0].name == DEFAULT_LIST);
            let idx = match providers.iter().position(|(p, _)| *p == cat.provider) {
                Some(i) => i,
                None => {
                    providers.push((cat.provider.clone(), Vec::new()));
                    providers.len() - 1
                }
            };
            let lists = &mut providers[idx].1;
            for list in cat.lists {
                merge_list(lists, list, &cat.origin, true, explicit)?;
            }
        }
        for (provider, name) in &self.selections {
            let lists = providers
                .iter_mut()
                .find(|(p, _)| p == provider)
                .map(|(_, l)| l)
                .ok_or_else(|| {
                    PricingError::Config(format!("select_catalog: no catalog for provider {provider}"))
                })?;
            let pos = lists.iter().position(|l| &l.name == name).ok_or_else(|| {
                PricingError::Config(format!(
                    "select_catalog: provider {provider} has no price list {name:?}"
                ))
            })?;
            let l = lists.remove(pos);
            lists.insert(0, l);
        }

        let mut rates: HashMap<Currency, ExchangeRate> = HashMap::default();
        let mut entries = HashMap::default();
        let mut catalogs = Vec::new();
        for (provider, lists) in providers {
            catalogs.push((provider.clone(), lists.iter().map(|l| l.name.clone()).collect()));
            for list in lists {
                let Some(currency) = list.currency.clone() else {
                    return Err(PricingError::Config(format!(
                        "price list {:?} of {provider} was only ever given by overrides and has no currency",
                        list.name
                    )));
                };
                if let Some(usd) = list.usd_per_unit {
                    rates.insert(
                        currency.clone(),
                        ExchangeRate {
                            from: currency.clone(),
                            to: Currency::Usd,
                            per_unit: usd,
                        },
                    );
                }
                let info = Arc::new(ListInfo {
                    name: list.name.clone(),
                    code: currency.to_string(),
                    currency,
                    plan_discounts: list.plan_discounts.unwrap_or(false),
                });
                for (model, price) in list.models {
                    entries
                        .entry(ModelRef::new(provider.clone(), model))
                        .or_insert_with(|| Entry {
                            price,
                            list: info.clone(),
                        });
                }
            }
        }
        for rate in self.rates {
            if rate.from == rate.to {
                return Err(PricingError::Config(format!(
                    "conversion from {} to itself",
                    rate.from
                )));
            }
            let credits_to_usd = rate.to == Currency::Usd && matches!(rate.from, Currency::Credits(_));
            if rate.to != Currency::Cu && !credits_to_usd {
                return Err(PricingError::Config(format!(
                    "conversion {} → {}: conversions lead to CU (credits may lead to USD, then CU)",
                    rate.from, rate.to
                )));
            }
            if rate.per_unit.is_sign_negative() {
                return Err(PricingError::Config(format!(
                    "conversion {} → {} has a negative rate",
                    rate.from, rate.to
                )));
            }
            rates.insert(rate.from.clone(), rate);
        }
        for (p, fee) in &self.byok {
            if fee.is_negative() {
                return Err(PricingError::Config(format!("negative BYOK fee for {p}")));
            }
        }
        for (m, t) in &self.thresholds {
            if t.is_negative() {
                return Err(PricingError::Config(format!(
                    "negative high-cost threshold for {m}"
                )));
            }
        }
        Ok(PriceBook {
            inner: Arc::new(Inner {
                entries,
                rates,
                cu_rounding: self.cu_rounding.unwrap_or(DEFAULT_CU_ROUNDING),
                plan: self.plan,
                byok: self.byok.into_iter().collect(),
                thresholds: self.thresholds.into_iter().collect(),
                catalogs,
            }),
        })
    }
}

fn merge_list(
    lists: &mut Vec<PriceList>,
    list: PriceList,
    origin: &str,
    is_override: bool,
    explicit_name: bool,
) -> Result<(), PricingError> {
    let existing = if is_override && !explicit_name {
        // An unnamed override patches the provider's first list.
        if lists.is_empty() { None } else { Some(0) }
    } else {
        lists.iter().position(|l| l.name == list.name)
    };
    let Some(i) = existing else {
        if list.currency.is_none() {
            return Err(CatalogError {
                origin: origin.to_owned(),
                line: None,
                key: "currency".into(),
                problem: CatalogProblem::MissingField,
                message: format!(
                    "price list {:?} is new here, so it must declare its currency",
                    list.name
                ),
            }
            .into());
        }
        lists.push(list);
        return Ok(());
    };
    let target = &mut lists[i];
    if let Some(c) = &list.currency
        && target.currency.as_ref() != Some(c)
    {
        return Err(CatalogError {
            origin: origin.to_owned(),
            line: None,
            key: "currency".into(),
            problem: CatalogProblem::Invalid,
            message: format!(
                "price list {:?} is in {}, this one says {c}",
                target.name,
                target
                    .currency
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            ),
        }
        .into());
    }
    if list.usd_per_unit.is_some() {
        target.usd_per_unit = list.usd_per_unit;
    }
    if list.plan_discounts.is_some() {
        target.plan_discounts = list.plan_discounts;
    }
    for (id, price) in list.models {
        match target.models.iter_mut().find(|(m, _)| *m == id) {
            Some(slot) if is_override => slot.1 = price,
            Some(_) => {
                return Err(CatalogError {
                    origin: origin.to_owned(),
                    line: price
                        .declared_at
                        .rsplit_once(':')
                        .and_then(|(_, l)| l.parse().ok()),
                    key: format!("models.{}", key_segment(id.as_str())),
                    problem: CatalogProblem::PricedTwice,
                    message: format!(
                        "model {id} is already priced in list {:?}; use an override to replace a price",
                        target.name
                    ),
                }
                .into());
            }
            None => target.models.push((id, price)),
        }
    }
    Ok(())
}

/// Lines kept for a full quote.
struct Lines {
    lines: Vec<QuoteLine>,
    currency: Currency,
}

impl Sink for Lines {
    fn note(&mut self, text: impl FnOnce() -> String) {
        self.lines.push(QuoteLine::note(text()));
    }
    fn step(&mut self, text: impl FnOnce() -> String, amount: Decimal) {
        self.lines.push(QuoteLine::with_amount(
            text(),
            Money::new(amount.normalize(), self.currency.clone()),
        ));
    }
}

trait CurrencySink: Sink {
    fn set_currency(&mut self, c: &Currency);
}
impl CurrencySink for NoLines {
    #[inline(always)]
    fn set_currency(&mut self, _: &Currency) {}
}
impl CurrencySink for Lines {
    fn set_currency(&mut self, c: &Currency) {
        self.currency = c.clone();
    }
}

struct Figures {
    cost: Money,
    cost_cu: Option<Money>,
    high_cost: bool,
    reported: bool,
}

impl PriceBook {
    /// A builder.
    pub fn builder() -> PriceBookBuilder {
        PriceBookBuilder::default()
    }

    /// The six built-in catalogs with the default conversion 1 USD = [`BUILTIN_CU_PER_USD`] CU (Runway
    /// credits convert through their catalog's `usd_per_unit`), and no plan discount.
    pub fn with_builtin() -> Result<PriceBook, PricingError> {
        Self::builtin_builder()?.build()
    }

    /// [`PriceBook::with_builtin`]'s builder, to add a plan, overrides or thresholds before building.
    pub fn builtin_builder() -> Result<PriceBookBuilder, PricingError> {
        Ok(PriceBook::builder()
            .catalogs(crate::builtin::catalogs()?)
            .conversion(ExchangeRate {
                from: Currency::Usd,
                to: Currency::Cu,
                per_unit: BUILTIN_CU_PER_USD,
            }))
    }

    /// Whether some catalog prices this model.
    pub fn has_model(&self, target: &ModelRef) -> bool {
        self.inner.entries.contains_key(target)
    }

    /// Every priced model, sorted.
    pub fn models(&self) -> Vec<&ModelRef> {
        let mut v: Vec<&ModelRef> = self.inner.entries.keys().collect();
        v.sort();
        v
    }

    /// Providers and their price lists in lookup order.
    pub fn catalogs(&self) -> &[(ProviderId, Vec<String>)] {
        &self.inner.catalogs
    }

    /// The configured plan.
    pub fn plan(&self) -> Option<Plan> {
        self.inner.plan
    }

    /// A quote that explains itself line by line.
    pub fn quote(&self, target: &ModelRef, job: &Job) -> Result<Quote, PricingError> {
        let entry = self.entry(target)?;
        let mut lines = Lines {
            lines: Vec::with_capacity(8),
            currency: entry.list.currency.clone(),
        };
        let p = self.price(target, entry, job, None, &mut lines)?;
        Ok(Quote {
            target: target.clone(),
            cost: p.cost,
            cost_cu: p.cost_cu,
            lines: lines.lines,
            high_cost: p.high_cost,
            source: QuoteSource::PriceTable,
            price_verified: Some(entry.price.verified.clone()),
        })
    }

    /// The same figures as [`PriceBook::quote`] without the explanation (no string formatting): the fast
    /// path for routers comparing many candidates.
    pub fn quote_amount(&self, target: &ModelRef, job: &Job) -> Result<QuoteAmount, PricingError> {
        let entry = self.entry(target)?;
        let p = self.price(target, entry, job, None, &mut NoLines)?;
        Ok(QuoteAmount {
            cost: p.cost,
            cost_cu: p.cost_cu,
            high_cost: p.high_cost,
        })
    }

    /// What a finished generation cost: the provider's own figure when it reported money
    /// (`generation.charged`, source kept); else the catalog price of the quantity it reported
    /// (`ProviderReported`); else the catalog price of the job (`PriceTable`).
    pub fn charge(
        &self,
        target: &ModelRef,
        job: &Job,
        generation: &Generation,
    ) -> Result<Charge, PricingError> {
        if let Some(c) = &generation.charged {
            return Ok(c.clone());
        }
        let entry = self.entry(target)?;
        let p = self.price(target, entry, job, Some(&generation.usage), &mut NoLines)?;
        Ok(Charge {
            amount: p.cost,
            source: if p.reported {
                CostSource::ProviderReported
            } else {
                CostSource::PriceTable
            },
        })
    }

    /// [`PriceBook::charge`] together with the charge in compute units, as [`PriceBook::to_cu`] of its amount
    /// would give it (`None` where no conversion to CU is configured), in one pass: a priced charge reuses
    /// the conversion its pricing already made instead of converting the amount again.
    pub fn charge_cu(
        &self,
        target: &ModelRef,
        job: &Job,
        generation: &Generation,
    ) -> Result<(Charge, Option<Money>), PricingError> {
        if let Some(c) = &generation.charged {
            let cu = self.to_cu(&c.amount).ok();
            return Ok((c.clone(), cu));
        }
        let entry = self.entry(target)?;
        let p = self.price(target, entry, job, Some(&generation.usage), &mut NoLines)?;
        Ok((
            Charge {
                amount: p.cost,
                source: if p.reported {
                    CostSource::ProviderReported
                } else {
                    CostSource::PriceTable
                },
            },
            p.cost_cu,
        ))
    }

    /// Like [`PriceBook::charge`], with the explanation (for cost logs and audits).
    pub fn charge_explained(
        &self,
        target: &ModelRef,
        job: &Job,
        usage: &Usage,
    ) -> Result<(Charge, Vec<QuoteLine>), PricingError> {
        let entry = self.entry(target)?;
        let mut lines = Lines {
            lines: Vec::new(),
            currency: entry.list.currency.clone(),
        };
        let p = self.price(target, entry, job, Some(usage), &mut lines)?;
        let source = if p.reported {
            CostSource::ProviderReported
        } else {
            CostSource::PriceTable
        };
        Ok((
            Charge {
                amount: p.cost,
                source,
            },
            lines.lines,
        ))
    }

    /// Converts an amount to compute units with the configured rates and CU rounding.
    pub fn to_cu(&self, amount: &Money) -> Result<Money, PricingError> {
        self.convert_cu(amount, &mut NoLines)
    }

    fn entry(&self, target: &ModelRef) -> Result<&Entry, PricingError> {
        self.inner
            .entries
            .get(target)
            .ok_or_else(|| PricingError::UnknownModel {
                target: target.clone(),
            })
    }

    fn convert_cu<S: CurrencySink>(&self, amount: &Money, sink: &mut S) -> Result<Money, PricingError> {
        if *amount.currency() == Currency::Cu {
            return Ok(amount.clone());
        }
        // Walked on the bare amount (rates are keyed by the currency they convert from, so each applies to
        // the amount in hand): no `Money` copy per step.
        let mut value = amount.amount();
        let mut currency = amount.currency();
        for _ in 0..4 {
            let Some(rate) = self.inner.rates.get(currency) else {
                break;
            };
            let next = value
                .checked_mul(rate.per_unit)
                .ok_or_else(|| PricingError::Money {
                    context: format!(
                        "converting {} to {}",
                        Money::new(value, currency.clone()),
                        rate.to
                    ),
                    source: MoneyError::Overflow,
                })?;
            sink.set_currency(&rate.to);
            sink.step(
                || {
                    format!(
                        "converted at 1 {} = {} {}",
                        rate.from,
                        num(rate.per_unit),
                        rate.to
                    )
                },
                next,
            );
            value = next;
            currency = &rate.to;
            if *currency == Currency::Cu {
                let r = self.inner.cu_rounding;
                let rounded = crate::rule::round(value, r);
                if S::EXPLAINS && rounded != value {
                    sink.step(|| format!("CU rounded {}", rounding_text(r)), rounded);
                }
                return Ok(Money::cu(rounded));
            }
        }
        Err(PricingError::ConversionMissing {
            from: amount.currency().clone(),
            to: Currency::Cu,
        })
    }

    fn price<S: CurrencySink>(
        &self,
        target: &ModelRef,
        entry: &Entry,
        job: &Job,
        usage: Option<&Usage>,
        sink: &mut S,
    ) -> Result<Figures, PricingError> {
        let price = &*entry.price;
        let list = &*entry.list;
        let rule = &price.rule;
        let mods = &price.mods;
        let op = job.operation();
        let fail = |f: Fail| match f {
            Fail::NotApply(reason) => PricingError::RuleDoesNotApply {
                target: target.clone(),
                rule: rule.kind(),
                operation: op,
                reason,
            },
            Fail::Overflow => PricingError::overflow(format!("pricing {target}")),
        };
        sink.note(|| {
            format!(
                "{target}: {} rule, price list {:?} ({}), verified {} ({})",
                rule.kind(),
                list.name,
                list.code,
                price.verified,
                price.declared_at
            )
        });
        if let Some(ops) = &mods.operations
            && !ops.contains(&op)
        {
            return Err(fail(Fail::NotApply(format!(
                "the price covers {} only",
                ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")
            ))));
        }
        let facts = Facts::of(job, mods.default_quality.as_deref());
        let cur = list.code.as_str();
        let (mut amount, reported) = rule.base(&facts, usage, cur, sink).map_err(fail)?;

        // Multipliers.
        if let Some(m) = mods.control {
            let has = match job {
                Job::Image(i) => !i.controls().is_empty(),
                _ => false,
            };
            if has {
                amount = mul(amount, m).map_err(fail)?;
                sink.step(|| format!("composition control × {}", num(m)), amount);
            }
        }
        if let Some(m) = mods.per_reference {
            let n = match job {
                Job::Image(i) => i.references().len(),
                _ => 0,
            };
            if n > 0 {
                let factor = Decimal::ONE + mul(m, Decimal::from(n as u64)).map_err(fail)?;
                amount = mul(amount, factor).map_err(fail)?;
                sink.step(
                    || format!("{n} reference input(s) × +{} each → × {}", num(m), num(factor)),
                    amount,
                );
            }
        }
        if let Some(m) = mods.audio
            && let Job::Video(v) = job
            && v.audio()
        {
            amount = mul(amount, m).map_err(fail)?;
            sink.step(|| format!("native audio × {}", num(m)), amount);
        }
        if let Some(r) = mods.rounding {
            let out = r.apply(amount);
            if out != amount {
                amount = out;
                sink.step(|| format!("rounded {}", rounding_text(r)), amount);
            }
        }
        if let Some(min) = mods.minimum
            && amount < min
        {
            amount = min;
            sink.step(|| format!("minimum charge {} {cur} applies", num(min)), amount);
        }
        if list.plan_discounts
            && let Some(plan) = self.inner.plan
        {
            let pct = plan.discount_percent();
            if !pct.is_zero() {
                let factor = (Decimal::ONE_HUNDRED - pct) / Decimal::ONE_HUNDRED;
                amount = mul(amount, factor).map_err(fail)?;
                if let Some(r) = mods.rounding {
                    amount = r.apply(amount);
                }
                sink.step(
                    || {
                        format!(
                            "{} plan discount −{}% (× {})",
                            plan.as_str(),
                            num(pct),
                            num(factor)
                        )
                    },
                    amount,
                );
            } else {
                sink.note(|| format!("{} plan: standard rate, no discount", plan.as_str()));
            }
        }
        if let Some(fee) = self.inner.byok.get(&target.provider) {
            if *fee.currency() != list.currency {
                return Err(PricingError::Config(format!(
                    "the BYOK fee for {} is in {}, but {target} is priced in {}",
                    target.provider,
                    fee.currency(),
                    list.currency
                )));
            }
            let assets = Decimal::from(job.output_count());
            let add = mul(fee.amount(), assets).map_err(fail)?;
            amount = amount.checked_add(add).ok_or_else(|| fail(Fail::Overflow))?;
            sink.step(
                || {
                    format!(
                        "+ BYOK post-processing fee {} {cur} × {} asset(s)",
                        num(fee.amount()),
                        assets
                    )
                },
                amount,
            );
        }
        let cost = Money::new(amount, list.currency.clone());
        let cost_cu = match self.convert_cu(&cost, sink) {
            Ok(cu) => Some(cu),
            Err(PricingError::ConversionMissing { .. }) => {
                sink.note(|| format!("no conversion from {cur} to CU configured: cost_cu left empty"));
                None
            }
            Err(e) => return Err(e),
        };
        let high_cost = match self.inner.thresholds.get(&job.modality()) {
            None => false,
            Some(t) => {
                let cmp = if t.currency() == cost.currency() {
                    Some(&cost)
                } else if *t.currency() == Currency::Cu {
                    cost_cu.as_ref()
                } else {
                    None
                };
                let threshold_cu;
                let (value, threshold) = match cmp {
                    Some(v) => (Some(v), t),
                    None => match (self.to_cu(t), cost_cu.as_ref()) {
                        (Ok(tc), Some(c)) => {
                            threshold_cu = tc;
                            (Some(c), &threshold_cu)
                        }
                        _ => (None, t),
                    },
                };
                match value {
                    Some(v) => {
                        let high = v.amount() >= threshold.amount();
                        if high {
                            sink.note(|| {
                                format!("high cost: {v} ≥ the {} threshold of {threshold}", job.modality())
                            });
                        }
                        high
                    }
                    None => {
                        sink.note(|| format!("high-cost check skipped: cannot compare {cost} with {t}"));
                        false
                    }
                }
            }
        };
        Ok(Figures {
            cost,
            cost_cu,
            high_cost,
            reported,
        })
    }
}
