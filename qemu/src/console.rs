//! Reading Liftoff's boot timeline (DESIGN.md section 9) back from a console log.

/// `(stage, boottime_us)` for every `liftoff: timeline stage=S boottime_us=N` line, in order.
pub fn timeline(lines: &[String]) -> Vec<(String, u64)> {
    timeline_of(lines, "liftoff")
}

/// [`timeline`] for the lines another program (`who`) writes in the same form,
/// `<who>: timeline stage=S boottime_us=N` (the boot bench's floor).
pub fn timeline_of(lines: &[String], who: &str) -> Vec<(String, u64)> {
    let prefix = format!("{who}: timeline stage=");
    lines
        .iter()
        .filter_map(|l| {
            let (_, rest) = l.split_once(prefix.as_str())?;
            let (stage, t) = rest.split_once(" boottime_us=")?;
            Some((stage.to_owned(), t.trim().parse().ok()?))
        })
        .collect()
}

/// A table of the timeline with the time each stage took.
pub fn format_timeline(marks: &[(String, u64)]) -> String {
    let mut out = String::from("stage                boottime      since previous\n");
    let mut previous = None;
    for (stage, t) in marks {
        let delta = previous.map_or(String::new(), |p: u64| {
            format!("{:>10.1} ms", t.saturating_sub(p) as f64 / 1000.0)
        });
        out.push_str(&format!(
            "{stage:<20} {:>9.3} s {delta}\n",
            *t as f64 / 1_000_000.0
        ));
        previous = Some(*t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_formats_marks() {
        let lines: Vec<String> = [
            "[    2.45] liftoff: timeline stage=pid1 boottime_us=1894697",
            "[    2.46] liftoff: loaded 12 modules",
            "[    2.47] liftoff: timeline stage=modules boottime_us=2039980",
            "liftoff: timeline stage=broken boottime_us=x",
        ]
        .map(String::from)
        .to_vec();
        let marks = timeline(&lines);
        assert_eq!(timeline_of(&lines, "floor"), []);
        let floor = ["[    1.00] floor: timeline stage=pid1 boottime_us=5".to_string()];
        assert_eq!(timeline_of(&floor, "floor"), [("pid1".to_string(), 5)]);
        assert_eq!(
            marks,
            [
                ("pid1".to_string(), 1_894_697),
                ("modules".to_string(), 2_039_980)
            ]
        );
        assert_eq!(
            format_timeline(&marks),
            "stage                boottime      since previous\n\
             pid1                     1.895 s \n\
             modules                  2.040 s      145.3 ms\n"
        );
    }
}
