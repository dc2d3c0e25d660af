//! `customs policy test|eval`: run a Rego policy (a file, or `paved-road` for the shipped one) on
//! test cases or on an image's evidence (a `customs scan --format json` report).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Run POLICY on every case (`*.json`: {"input", "expect": {"allow", "deny", "warn"}}) in CASES.
    Test { policy: String, cases: PathBuf },
    /// Print POLICY's decision on INPUT (evidence JSON, e.g. a scan report); exit 1 when denied.
    Eval { policy: String, input: PathBuf },
    /// Print the shipped paved-road policy.
    Show,
}

/// `paved-road`, a `.rego` path, or (with `dir`) a policy name there (`NAME` for `dir/NAME.rego`).
pub fn load(policy: &str, dir: Option<&Path>) -> anyhow::Result<policy::Policy> {
    if policy == "paved-road" {
        return Ok(policy::Policy::paved_road());
    }
    let path = match dir {
        Some(dir) if !policy.ends_with(".rego") && !policy.contains('/') => dir.join(format!("{policy}.rego")),
        Some(dir) => dir.join(policy),
        None => PathBuf::from(policy),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read policy {} (a .rego file, or `paved-road`)", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| policy.to_owned());
    policy::Policy::new(&name, &text).map_err(anyhow::Error::msg)
}

fn cases(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no *.json cases in {}", dir.display());
    }
    Ok(files)
}

/// Exit code: 0 when everything passed (or was allowed), 1 otherwise.
pub fn run(command: PolicyCommand) -> anyhow::Result<u8> {
    match command {
        PolicyCommand::Show => {
            print!("{}", policy::PAVED_ROAD);
            Ok(0)
        }
        PolicyCommand::Test { policy, cases: dir } => {
            let p = load(&policy, None)?;
            let mut failed = 0;
            let files = cases(&dir)?;
            for f in &files {
                let case: policy::Case = serde_json::from_slice(&std::fs::read(f)?).with_context(|| format!("{}: not a policy case", f.display()))?;
                match case.check(&p) {
                    Ok(_) => println!("ok    {}", f.display()),
                    Err(e) => {
                        failed += 1;
                        println!("FAIL  {}: {e}", f.display());
                    }
                }
            }
            println!("{} cases, {failed} failed", files.len());
            Ok(u8::from(failed > 0))
        }
        PolicyCommand::Eval { policy, input } => {
            let p = load(&policy, None)?;
            let evidence: serde_json::Value = serde_json::from_slice(&std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?)
                .with_context(|| format!("{}: not JSON", input.display()))?;
            let d = p.evaluate(&evidence).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(u8::from(!d.allow))
        }
    }
}
