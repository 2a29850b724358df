//! Terminal output: colours (only on a TTY, never with NO_COLOR), usage bars, tables.

use std::io::IsTerminal;

use genroute::{Decimal, Usage, UsageStatus};

/// Whether stdout gets ANSI colours.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn paint(code: &str, s: &str) -> String {
    if colour() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

/// Green text.
pub fn green(s: &str) -> String {
    paint("32", s)
}

/// Amber (yellow) text.
pub fn amber(s: &str) -> String {
    paint("33", s)
}

/// Red text.
pub fn red(s: &str) -> String {
    paint("31", s)
}

/// Bold text.
pub fn bold(s: &str) -> String {
    paint("1", s)
}

/// Dim text.
pub fn dim(s: &str) -> String {
    paint("2", s)
}

/// A decimal with trailing zeros removed.
pub fn num(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A usage bar: `[████████░░░░░░░░░░░░]  40 %  used/limit CU`, amber from 80 %, red at 100 %.
pub fn usage_bar(u: &Usage) -> String {
    let committed = u.used.amount() + u.held.amount();
    // Uncapped scopes measure against what they could reach: committed + what is left of the pool.
    let pool = committed + u.remaining.amount();
    let limit = u.cap.as_ref().map_or(pool, |c| c.amount());
    let pct = if limit > Decimal::ZERO {
        (committed * Decimal::from(100) / limit).round_dp(0)
    } else {
        Decimal::from(100)
    };
    let width = 20u32;
    let filled = if limit > Decimal::ZERO {
        let f = (committed * Decimal::from(width) / limit).round_dp(0);
        f.to_string().parse::<u32>().unwrap_or(width).min(width)
    } else {
        width
    };
    let bar = format!(
        "[{}{}]",
        "█".repeat(filled as usize),
        "░".repeat((width - filled) as usize)
    );
    let bar = match u.status {
        UsageStatus::Ok => green(&bar),
        UsageStatus::Amber => amber(&bar),
        UsageStatus::Red => red(&bar),
    };
    let status = match u.status {
        UsageStatus::Ok => "ok",
        UsageStatus::Amber => "amber",
        UsageStatus::Red => "red",
    };
    let cap = match &u.cap {
        Some(c) if u.cap_is_default => format!("{} CU (default cap)", num(c.amount())),
        Some(c) => format!("{} CU cap", num(c.amount())),
        None => format!("{} CU pool", num(pool)),
    };
    format!(
        "{bar} {pct:>3} %  {} used + {} held of {cap}, {} left  {status}",
        num(u.used.amount()),
        num(u.held.amount()),
        num(u.remaining.amount()),
    )
}

/// A simple left-aligned table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths.get(i).copied().unwrap_or(0);
                format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count())))
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![bold(&line(header.iter().map(|s| (*s).to_owned()).collect()))];
    for r in rows {
        out.push(line(r.clone()));
    }
    out.join("\n")
}
