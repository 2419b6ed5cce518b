//! `soak.csv`: a row per window and tenant, written through the harness's one CSV format
//! ([`crate::harness::csv`]) and read back (`soak --replot`).

use anyhow::{bail, Context as _};

use super::{SoakReport, WindowRow};
use crate::harness::csv::{self, Table};

/// The columns of `soak.csv`.
const CSV_HEADER: &str = "end_s,tenant,label,requests,shed,p50_ms,p99_ms,p99_lo_ms,p99_hi_ms,rss_mib,gpu_used_mib,\
                          sm_clock_mhz,temperature_c,max_ms,slowest_end_s,involuntary_switches,load1,other_cpu,steal_cpu,\
                          gpu_processes";

/// `soak.csv`: a row per window and tenant.
pub(super) fn csv(labels: &[String], rows: &[WindowRow]) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut table = Table::new(CSV_HEADER);
    for r in rows {
        table.row(&[
            &format!("{:.1}", r.end_s),
            &r.tenant,
            &labels[r.tenant],
            &r.requests,
            &r.shed,
            &opt(r.p50_ms),
            &opt(r.p99_ms),
            &opt(r.p99_interval_ms.map(|i| i.0)),
            &opt(r.p99_interval_ms.map(|i| i.1)),
            &opt(r.rss_mib),
            &opt(r.gpu_used_mib),
            &opt(r.sm_clock_mhz),
            &opt(r.temperature_c),
            &opt(r.max_ms),
            &opt(r.slowest_end_s),
            &count(r.involuntary_switches),
            &opt(r.load1),
            &opt(r.other_cpu),
            &opt(r.steal_cpu),
            &count(r.gpu_processes.map(u64::from)),
        ]);
    }
    table.into_text()
}

/// Reads a `soak.csv` back (`what` names it in errors); the columns after `temperature_c`,
/// which earlier soaks did not write, may be missing.
pub fn read_csv(text: &str, what: &str) -> anyhow::Result<SoakReport> {
    let mut records = csv::records(text).into_iter();
    let header: Vec<String> = records.next().map(|(_, fields)| fields).unwrap_or_default();
    let at = |name: &str| header.iter().position(|h| *h == name);
    let required = ["end_s", "tenant", "label", "requests", "shed", "p99_ms"];
    if let Some(missing) = required.iter().find(|c| at(c).is_none()) {
        bail!("{what}: not a soak.csv (no column {missing})");
    }
    let mut labels: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let blank = |fields: &[String]| matches!(fields, [f] if f.trim().is_empty());
    for (line, fields) in records.filter(|(_, fields)| !blank(fields)) {
        if fields.len() != header.len() {
            bail!("{what}, line {line}: {} fields for {} columns", fields.len(), header.len());
        }
        let field = |name: &str| at(name).map(|i| fields[i].as_str()).filter(|f| !f.is_empty());
        // A column's value (`None`: empty or missing), or why it does not parse.
        fn parse<T: std::str::FromStr>(f: Option<&str>, at: impl Fn() -> String) -> anyhow::Result<Option<T>>
        where
            T::Err: std::error::Error + Send + Sync + 'static,
        {
            f.map(|f| f.parse::<T>().with_context(|| format!("{} {f:?}", at()))).transpose()
        }
        // A figure, refused where no measurement gives it (a plot could not draw its axes).
        let num = |name: &str| -> anyhow::Result<Option<f64>> {
            let v = parse::<f64>(field(name), || format!("{what}, line {line}: {name}"))?;
            if let Some(x) = v {
                crate::harness::results::check_figure(x, || format!("{what}, line {line}: {name}"))?;
            }
            Ok(v)
        };
        let count = |name: &str| -> anyhow::Result<usize> {
            parse(field(name), || format!("{what}, line {line}: {name}"))?
                .with_context(|| format!("{what}, line {line}: no {name}"))
        };
        let switches =
            parse::<u64>(field("involuntary_switches"), || format!("{what}, line {line}: involuntary_switches"))?;
        let processes = parse::<u32>(field("gpu_processes"), || format!("{what}, line {line}: gpu_processes"))?;
        let tenant = count("tenant")?;
        let label = field("label").unwrap_or("").to_string();
        match labels.get(tenant) {
            Some(l) if *l != label => bail!("{what}, line {line}: tenant {tenant} is {l}, not {label}"),
            Some(_) => {}
            None if tenant == labels.len() => labels.push(label),
            None => bail!("{what}, line {line}: tenant {tenant} before tenant {}", labels.len()),
        }
        let end_s = num("end_s")?.with_context(|| format!("{what}, line {line}: no end_s"))?;
        rows.push(WindowRow {
            end_s,
            tenant,
            requests: count("requests")?,
            shed: count("shed")?,
            p99_ms: num("p99_ms")?,
            p99_interval_ms: num("p99_lo_ms")?.zip(num("p99_hi_ms")?),
            p50_ms: num("p50_ms")?,
            rss_mib: num("rss_mib")?,
            gpu_used_mib: num("gpu_used_mib")?,
            sm_clock_mhz: num("sm_clock_mhz")?,
            temperature_c: num("temperature_c")?,
            max_ms: num("max_ms")?,
            slowest_end_s: num("slowest_end_s")?,
            involuntary_switches: switches,
            load1: num("load1")?,
            other_cpu: num("other_cpu")?,
            steal_cpu: num("steal_cpu")?,
            gpu_processes: processes,
        });
    }
    if rows.is_empty() {
        bail!("{what}: no windows");
    }
    Ok(SoakReport { labels, rows, error: None })
}

impl SoakReport {
    /// `soak.csv`: a row per window and tenant.
    pub fn csv(&self) -> String {
        csv(&self.labels, &self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_csv_reads_back_and_bad_files_are_refused_with_their_line() {
        let row = |end_s: f64, tenant| WindowRow {
            end_s,
            tenant,
            requests: 700,
            shed: 0,
            p99_ms: Some(4.0 + tenant as f64),
            p99_interval_ms: Some((3.5, 4.5)),
            p50_ms: Some(1.25),
            rss_mib: Some(360.5),
            gpu_used_mib: Some(6128.812),
            sm_clock_mhz: Some(1980.0),
            temperature_c: Some(45.0),
            max_ms: Some(9.5),
            slowest_end_s: Some(end_s - 2.5),
            involuntary_switches: Some(12),
            load1: Some(1.25),
            other_cpu: Some(1.5),
            steal_cpu: Some(0.125),
            gpu_processes: Some(1),
        };
        let r = SoakReport {
            labels: vec!["bert-base".into(), "gpt2".into()],
            rows: vec![row(60.0, 0), row(60.0, 1), row(120.0, 0), row(120.0, 1)],
            error: None,
        };
        let back = read_csv(&r.csv(), "soak.csv").unwrap();
        assert_eq!((back.labels, back.rows), (r.labels.clone(), r.rows.clone()));
        // An earlier soak's file, without the last four columns, still reads.
        let old: String = r.csv().lines().map(|l| l.split(',').take(13).collect::<Vec<_>>().join(",") + "\n").collect();
        let back = read_csv(&old, "old.csv").unwrap();
        assert!(back.rows.iter().all(|w| w.max_ms.is_none() && w.load1.is_none() && w.p99_ms.is_some()));
        let err = |text: &str| format!("{:#}", read_csv(text, "f.csv").unwrap_err());
        assert!(err("a,b\n1,2\n").contains("f.csv: not a soak.csv (no column end_s)"));
        assert!(err(&r.csv().replace("700", "many")).contains("line 2: requests \"many\""));
        assert!(err(&r.csv().replacen(",1,gpt2,", ",1,bert,", 1)).contains("line 5: tenant 1 is bert, not gpt2"));
        assert!(
            err(&r.csv().replacen(",0,bert-base,", ",3,bert-base,", 1)).contains("line 2: tenant 3 before tenant 0")
        );
        assert!(err(&format!("{}60.0,0\n", r.csv())).contains("line 6: 2 fields for 20 columns"));
        assert!(err(CSV_HEADER).contains("no windows"));
        assert!(err(&r.csv().replacen(",12,", ",-1,", 1)).contains("line 2: involuntary_switches \"-1\""));
        // Figures no window gives (a plot's axes then never finished): refused, named.
        let first_end = r.csv().lines().nth(1).unwrap().split(',').next().unwrap().to_string();
        let inf_end = r.csv().replacen(&format!("\n{first_end},"), "\ninf,", 1);
        assert!(err(&inf_end).contains("line 2: end_s: inf is not a measured figure"), "{}", err(&inf_end));
        let huge_end = r.csv().replacen(&format!("\n{first_end},"), "\n1e300,", 1);
        assert!(err(&huge_end).contains("line 2: end_s: 1e300 is not a measured figure"));
    }
}
