//! What a profile's `kernel_image_hash` identifies: the code of the kernels the profiler times.
//! build.rs hashes each plain kernel's code on its own (`entry_codes`; a profile records the
//! hash of the kernels its request launches, kernels/mod.rs `kernels_hash`) and all of them
//! together (`plain_code`, `IMAGE_HASH`, which `rightsize info` shows).
//!
//! Profiles are measured in the plain unit order (runtime/claims.rs `UnitOrder`), so they time
//! each kernel's plain build, never its claimable `_counted` twin (`RS_KERNEL_PAIR`,
//! kernels/common.cuh). The hash covers the PTX nvcc makes of every entry but the `_counted`
//! ones, with the functions and variables they use, for each architecture; comments are left
//! out. An edit to comments, or to code that only the counted builds reach, therefore keeps
//! the hash and the committed profiles; any edit to what the plain kernels compile to changes
//! it. The SASS is a function of this PTX and of nvcc's version and flags, which the hash
//! covers too (build.rs).
//!
//! Shared by build.rs (`#[path]`) and the library's tests; it uses only `std`.

use std::collections::{HashMap, HashSet};

/// The suffixes of a kernel's claimable builds (`RS_KERNEL_PAIR`, and the Hopper GEMM's builds
/// whose tiles pause, kernels/gemm_sm90.cu), which profiles never time.
pub(crate) const CLAIMABLE_SUFFIXES: [&str; 2] = ["_counted", "_paused"];

/// One top-level statement of a PTX module: a directive, a variable, a function or an entry.
#[derive(Debug)]
struct Item {
    /// The variable's, function's or entry's name; `None` for a module directive.
    name: Option<String>,
    entry: bool,
    text: String,
}

/// The part of `ptx` the plain kernels compile from: module directives, every entry whose
/// name does not end in one of [`CLAIMABLE_SUFFIXES`], and the functions and variables those use
/// (transitively), in the module's order, without comments or blank lines. Refused where the
/// module does not split into one definition a statement (then the hash could miss code).
pub(crate) fn plain_code(ptx: &str) -> Result<String, String> {
    let items = checked_items(ptx)?;
    let roots = (0..items.len()).filter(|&i| is_plain_entry(&items[i])).collect();
    Ok(closure(&items, roots))
}

/// Each plain entry of `ptx` by name, with the part of the module it compiles from: the
/// module directives, the entry, and the functions and variables it uses (transitively). A
/// profile names the kernels it times by these (kernels/mod.rs `kernels_hash`), so an edit to
/// one kernel leaves the profiles of requests that do not launch it as they are.
pub(crate) fn entry_codes(ptx: &str) -> Result<Vec<(String, String)>, String> {
    let items = checked_items(ptx)?;
    Ok((0..items.len())
        .filter(|&i| is_plain_entry(&items[i]))
        .map(|i| (items[i].name.clone().unwrap_or_default(), closure(&items, vec![i])))
        .collect())
}

fn is_plain_entry(it: &Item) -> bool {
    let name = it.name.as_deref().unwrap_or("");
    it.entry && !CLAIMABLE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The statements of `ptx`, each one definition at most.
fn checked_items(ptx: &str) -> Result<Vec<Item>, String> {
    let items = items(&without_block_comments(ptx));
    if let Some(it) = items.iter().find(|it| definitions(&it.text) > 1) {
        let head: String = it.text.lines().take(2).collect::<Vec<_>>().join(" ");
        return Err(format!("PTX statement with more than one definition, from `{head}`"));
    }
    Ok(items)
}

/// The module directives, the statements `roots` and the functions and variables they use,
/// transitively, in the module's order, with the path hash taken out of names.
fn closure(items: &[Item], mut todo: Vec<usize>) -> String {
    let by_name: HashMap<&str, usize> =
        items.iter().enumerate().filter_map(|(i, it)| it.name.as_deref().map(|n| (n, i))).collect();
    todo.extend((0..items.len()).filter(|&i| items[i].name.is_none()));
    let mut kept: HashSet<usize> = HashSet::new();
    while let Some(i) = todo.pop() {
        if !kept.insert(i) {
            continue;
        }
        for word in words(&items[i].text) {
            if let Some(&j) = by_name.get(word) {
                if !items[j].entry && !kept.contains(&j) {
                    todo.push(j);
                }
            }
        }
    }
    let mut out = String::new();
    for (i, it) in items.iter().enumerate() {
        if kept.contains(&i) {
            out.push_str(&it.text);
        }
    }
    without_path_names(&out)
}

/// How many functions and entries `text` defines or declares.
fn definitions(text: &str) -> usize {
    text.split_whitespace().filter(|t| *t == ".entry" || *t == ".func").count()
}

/// `ptx` without its `/* … */` comments (nvcc writes none today; a brace in one would throw
/// the statements' split off).
fn without_block_comments(ptx: &str) -> String {
    let mut out = String::with_capacity(ptx.len());
    let mut rest = ptx;
    while let Some(at) = rest.find("/*") {
        out.push_str(&rest[..at]);
        rest = rest[at + 2..].split_once("*/").map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

/// `text` with the hash nvcc puts into the names of anonymous namespaces and their statics
/// (`_INTERNAL_d0d5e360_7_norm…_GLOBAL__N__d0d5e360_7_norm…`) taken out: it is made of the
/// source's absolute path, and the same kernels built in another directory are the same code.
fn without_path_names(text: &str) -> String {
    let mut out = text.to_string();
    for mark in ["_INTERNAL_", "_GLOBAL__N__"] {
        let mut kept = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(mark) {
            kept.push_str(&rest[..at + mark.len()]);
            rest = &rest[at + mark.len()..];
            let hex = rest.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(rest.len());
            if hex > 0 && rest[hex..].starts_with('_') {
                rest = &rest[hex + 1..];
            }
        }
        kept.push_str(rest);
        out = kept;
    }
    out
}

/// FNV-1a of `bytes` on top of `hash`, with a 0 byte after them (so that concatenations of
/// different pieces differ).
pub(crate) fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    fnv_bytes(fnv_bytes(hash, bytes), &[0])
}

/// FNV-1a of `bytes` on top of `hash` (kernels/params' shape keys too).
pub(crate) fn fnv_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// FNV-1a's offset basis.
pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The module's top-level statements. A statement ends where its braces close (a function or
/// entry body) or with a `;` outside braces (a directive or variable); comments go.
fn items(ptx: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let (mut text, mut depth, mut opened) = (String::new(), 0i64, false);
    for raw in ptx.lines() {
        let line = match raw.find("//") {
            Some(at) => &raw[..at],
            None => raw,
        };
        let line = line.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        text.push_str(line);
        text.push('\n');
        let ends = depth == 0 && (opened || line.ends_with(';') || is_module_directive(&text));
        if ends {
            items.push(item(std::mem::take(&mut text)));
            opened = false;
        }
    }
    if !text.trim().is_empty() {
        items.push(item(text));
    }
    items
}

/// `.version`, `.target` and `.address_size` end at their line, with no `;`.
fn is_module_directive(text: &str) -> bool {
    let t = text.trim_start();
    t.lines().count() == 1 && [".version", ".target", ".address_size"].iter().any(|d| t.starts_with(d))
}

fn item(text: String) -> Item {
    let head = text.lines().next().unwrap_or("");
    let tokens: Vec<&str> = head.split_whitespace().collect();
    let (name, entry) = if let Some(at) = tokens.iter().position(|&t| t == ".entry") {
        (tokens.get(at + 1).map(|t| t.split('(').next().unwrap_or(t).to_string()), true)
    } else if tokens.contains(&".func") {
        (func_name(&text), false)
    } else if [".global", ".shared", ".const", ".local"].iter().any(|s| tokens.contains(s)) {
        (variable_name(&text), false)
    } else {
        (None, false)
    };
    Item { name, entry, text }
}

/// A function's name: the identifier before its parameter list, after `.func` and the
/// optional return parameter in parentheses.
fn func_name(text: &str) -> Option<String> {
    let rest = text.split_once(".func")?.1.trim_start();
    let rest = if rest.starts_with('(') { rest.split_once(')')?.1.trim_start() } else { rest };
    let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_string())
}

/// A variable's name: the last identifier before its extent, initializer or `;`.
fn variable_name(text: &str) -> Option<String> {
    let decl = text.split(['[', '=', ';']).next()?;
    decl.split_whitespace().last().map(str::to_string)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// The identifiers in `text`.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_ident(c)).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "//\n// Generated by NVIDIA NVVM Compiler\n//\n\n.version 9.0\n.target sm_90a\n.address_size 64\n\n\t// .globl\tk\n.extern .shared .align 16 .b8 smem[];\n.shared .align 8 .b8 _ZZ5takerE5state[8];\n.global .align 4 .u32 used_by_helper = 3;\n\n.func  (.param .b32 func_retval0) _Z6helperi(\n\t.param .b32 _Z6helperi_param_0\n)\n{\n\tld.global.u32 \t%r1, [used_by_helper];\n\tret;\n}\n.visible .entry k(\n\t.param .u64 k_param_0\n)\n.maxntid 256, 1, 1\n{\n\t// begin inline asm\n\t{.reg .f16 low,high;\n\t}\n\tcall.uni (retval0), _Z6helperi, (param0);\n\tst.shared.u32 \t[smem], %r1;\n\tret;\n}\n\t// .globl\tk_counted\n.visible .entry k_counted(\n\t.param .u64 k_counted_param_0\n)\n{\n\tst.shared.u8 \t[_ZZ5takerE5state+4], %rs3;\n\tret;\n}\n";

    #[test]
    fn the_plain_code_keeps_plain_entries_and_what_they_use() {
        let code = plain_code(MODULE).unwrap();
        assert!(code.starts_with(".version 9.0\n.target sm_90a\n.address_size 64\n"), "{code}");
        assert!(code.contains(".visible .entry k("), "{code}");
        assert!(code.contains("_Z6helperi(") && code.contains("used_by_helper = 3"), "used transitively: {code}");
        assert!(code.contains(".extern .shared .align 16 .b8 smem[];"), "{code}");
        assert!(!code.contains("k_counted"), "the counted build is not timed by profiles: {code}");
        assert!(!code.contains("_ZZ5takerE5state"), "what only the counted build uses: {code}");
        assert!(!code.contains("//") && !code.contains("\n\n"), "no comments or blank lines: {code}");
    }

    #[test]
    fn comments_and_counted_code_keep_the_hash_and_plain_code_changes_it() {
        let hash = |ptx: &str| fnv(FNV_START, plain_code(ptx).unwrap().as_bytes());
        let base = hash(MODULE);
        assert_eq!(hash(&MODULE.replace("// begin inline asm", "// another comment")), base);
        assert_eq!(hash(&MODULE.replace("[_ZZ5takerE5state+4]", "[_ZZ5takerE5state+5]")), base);
        assert_eq!(hash(&MODULE.replace("_ZZ5takerE5state[8]", "_ZZ5takerE5state[16]")), base);
        assert_ne!(hash(&MODULE.replace(".maxntid 256", ".maxntid 128")), base);
        assert_ne!(hash(&MODULE.replace("used_by_helper = 3", "used_by_helper = 4")), base);
        assert_ne!(hash(&MODULE.replace(".target sm_90a", ".target sm_80")), base);
    }

    #[test]
    fn the_path_hash_in_anonymous_namespace_names_is_left_out() {
        let here = ".visible .entry k()\n{\n\tld.global.u32 %r1, [_ZZN37_INTERNAL_d0d5e360_7_norm_cu_2ac595fb39_GLOBAL__N__d0d5e360_7_norm_cu_2ac595fb3rowE];\n}\n";
        let there = here.replace("d0d5e360", "678cb4fc");
        let code = |ptx: &str| plain_code(ptx).unwrap();
        assert_eq!(code(here), code(&there));
        let name = "[_ZZN37_INTERNAL_7_norm_cu_2ac595fb39_GLOBAL__N__7_norm_cu_2ac595fb3rowE]";
        assert!(code(here).contains(name), "{}", code(here));
        assert_ne!(code(here), code(&here.replace("7_norm", "7_gemm")));
    }

    #[test]
    fn each_plain_entry_has_its_own_code() {
        let two = MODULE.replace(
            "\t// .globl\tk_counted",
            ".visible .entry other(\n)\n{\n\tst.global.u32 \t[used_by_helper], %r1;\n\tret;\n}\n\t// .globl\tk_counted",
        );
        let codes = entry_codes(&two).unwrap();
        let names: Vec<&str> = codes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["k", "other"], "plain entries only");
        let (k, other) = (&codes[0].1, &codes[1].1);
        assert!(k.contains("_Z6helperi(") && !k.contains(".entry other"), "{k}");
        assert!(other.contains("used_by_helper = 3") && !other.contains("_Z6helperi("), "{other}");
        assert!(other.starts_with(".version 9.0\n"), "the module directives: {other}");
        // An edit to `other` leaves `k`'s code as it is.
        let edited = entry_codes(&two.replace("[used_by_helper], %r1", "[used_by_helper], %r2")).unwrap();
        assert_eq!(edited[0], codes[0]);
        assert_ne!(edited[1], codes[1]);
    }

    #[test]
    fn block_comments_go_and_a_statement_of_two_definitions_is_refused() {
        let commented = MODULE.replace(".visible .entry k(", "/* a { brace */.visible .entry k(");
        assert_eq!(plain_code(&commented).unwrap(), plain_code(MODULE).unwrap());
        // An unbalanced brace merges the next entry into this one: refused, not hashed short.
        let merged = MODULE.replace("\tret;\n}\n.visible .entry k(", "\tret;\n.visible .entry k(");
        assert!(plain_code(&merged).unwrap_err().contains("more than one definition"));
    }

    #[test]
    fn names_are_read_from_functions_and_variables() {
        assert_eq!(func_name(".func  (.param .b32 func_retval0) _Z3fooi(\n").as_deref(), Some("_Z3fooi"));
        assert_eq!(func_name(".visible .func _Z3barv()\n").as_deref(), Some("_Z3barv"));
        assert_eq!(variable_name(".global .align 4 .b8 table[16];\n").as_deref(), Some("table"));
        assert_eq!(variable_name(".const .align 8 .u64 k = 5;\n").as_deref(), Some("k"));
    }
}
