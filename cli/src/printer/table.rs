//! The `table` format: ASCII tables like etcdctl's (olekukonko/tablewriter
//! with centered headers and right-aligned cells). The KV commands do not
//! support it (as in etcdctl).

use std::io::Write;

use kv_client::cluster::MemberListResponse;

use super::{io_err, member_rows, Printer, MEMBER_HEADER};
use crate::commands::endpoint::{EpHash, EpHealth, EpStatus};
use crate::exit::ExitError;

/// Prints ASCII tables.
pub struct TablePrinter;

/// Renders a table: a rule, centered headers, a rule, right-aligned rows,
/// a rule.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {cell:>w$} |"));
        }
        out.push('\n');
    }
    out.push_str(&rule);
    out
}

impl Printer for TablePrinter {
    fn name(&self) -> &'static str {
        "table"
    }

    fn endpoint_health(
        &self,
        w: &mut dyn Write,
        _err: &mut dyn Write,
        hs: &[EpHealth],
    ) -> Result<(), ExitError> {
        let rows: Vec<Vec<String>> = hs
            .iter()
            .map(|h| {
                vec![
                    h.ep.clone(),
                    h.health.to_string(),
                    super::go_duration(h.took),
                    h.error.clone(),
                ]
            })
            .collect();
        w.write_all(render(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows).as_bytes())
            .map_err(io_err)
    }

    fn endpoint_status(&self, w: &mut dyn Write, st: &[EpStatus]) -> Result<(), ExitError> {
        w.write_all(render(&super::STATUS_HEADER, &super::status_rows(st)).as_bytes())
            .map_err(io_err)
    }

    fn hash_kv(&self, w: &mut dyn Write, hs: &[EpHash]) -> Result<(), ExitError> {
        let rows: Vec<Vec<String>> = hs
            .iter()
            .map(|h| vec![h.ep.clone(), h.resp.hash().to_string()])
            .collect();
        w.write_all(render(&["ENDPOINT", "HASH"], &rows).as_bytes())
            .map_err(io_err)
    }

    fn member_list(&self, w: &mut dyn Write, r: &MemberListResponse) -> Result<(), ExitError> {
        w.write_all(render(&MEMBER_HEADER, &member_rows(r)).as_bytes())
            .map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn centered_headers_right_aligned_cells() {
        let t = render(&["ID", "STATUS"], &[vec!["abc".into(), "started".into()]]);
        assert_eq!(
            t,
            "+-----+---------+\n\
             | ID  | STATUS  |\n\
             +-----+---------+\n\
             | abc | started |\n\
             +-----+---------+\n"
        );
    }
}
