//! Sections: splitting a 2-d array into row sections, a slice of a group, a section of a
//! section, two arrays combined into one section, an empty section; multicasts to each
//! (fire and forget, awaited, with return values), section reductions and a section
//! allreduce. Every result is checked against what the members should give; the exit
//! status is 1 on any mismatch.
//!
//! `cargo run --release --example sections -- +p4 [rows cols]`

use charmrs::prelude::*;
use charmrs::{combine, section, split, Members, SliceDim};

/// An element of the arrays.
pub struct Cell {
    /// Multicasts received (with their tags).
    got: Vec<u32>,
}

#[chare]
impl Cell {
    fn new() -> Self {
        Cell { got: Vec::new() }
    }

    /// A multicast: records its tag.
    fn tag(&mut self, t: u32) {
        self.got.push(t);
    }

    /// The tags received so far.
    fn tags(&self) -> Vec<u32> {
        self.got.clone()
    }

    /// Row number: what a row section's members return.
    fn row(&self, ctx: &Ctx<Self>) -> i32 {
        ctx.this_index()[0]
    }

    /// Contributes `row * 100 + col` to a reduction over `sec`, then takes part in an
    /// allreduce over it whose result must equal the reduction's.
    async fn reduce_in(this: Handle<Self>, sec: CellProxy, done: Future<i64>, check: Future<u32>) {
        let i = this.this_index();
        let v = (i[0] * 100 + i[1]) as i64;
        this.section_contribute(&sec, v, Reducer::sum(), &done);
        let all = this.section_allreduce(&sec, v, Reducer::sum()).await.expect("allreduce");
        let total = this.section_allreduce(&sec, (all, 1u32), Reducer::custom("pair", pair)).await;
        let (sum, count) = total.expect("second allreduce");
        // Every member saw the same total: the sum of `count` equal values.
        let ok = (sum == all * count as i64) as u32;
        this.section_contribute(&sec, ok, Reducer::sum(), &check);
    }
}

fn pair(a: (i64, u32), b: (i64, u32)) -> (i64, u32) {
    (a.0 + b.0, a.1 + b.1)
}

/// A group element.
pub struct Member;

#[chare]
impl Member {
    fn new() -> Self {
        Member
    }

    fn pe(&self, ctx: &Ctx<Self>) -> u32 {
        ctx.this_index()[0] as u32
    }
}

fn check(bad: &mut u32, what: &str, ok: bool) {
    if ok {
        println!("ok: {what}");
    } else {
        println!("MISMATCH: {what}");
        *bad += 1;
    }
}

fn main() {
    charmrs::start(|main| async move {
        let args = main.args();
        let rows: i32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
        let cols: i32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
        let p = charmrs::num_pes();
        let mut bad = 0;

        let a = Array::<Cell>::new([rows, cols], ()).await.expect("array");
        let row_lists: Vec<Vec<Index>> =
            (0..rows).map(|r| (0..cols).map(|c| Index::from([r, c])).collect()).collect();
        let secs = split(&a, rows as u32, Members::Elems(row_lists)).await.expect("split");
        for (r, s) in secs.iter().enumerate() {
            let got = s.row().ret_all().await.expect("row");
            check(&mut bad, &format!("row section {r} multicast"), got == vec![r as i32; cols as usize]);
        }

        // Fire-and-forget multicasts arrive in order, then an awaited one.
        for t in 0..5 {
            secs[1].tag(t);
        }
        secs[1].tag(5).awaitable().await.expect("awaitable");
        let tags = a.tags().ret_all().await.expect("tags");
        let expect: Vec<Vec<u32>> =
            (0..rows * cols).map(|k| if k / cols == 1 { (0..6).collect() } else { Vec::new() }).collect();
        check(&mut bad, "multicasts reach exactly the members, in order", tags == expect);

        // Section reductions and allreduces, several sections at once.
        let mut waits = Vec::new();
        for (r, s) in secs.iter().enumerate() {
            let (done, ok) = (Future::<i64>::new(), Future::<u32>::new());
            s.reduce_in(*s, done.clone(), ok.clone());
            waits.push((r as i64, done, ok));
        }
        for (r, done, ok) in waits {
            let want: i64 = (0..cols as i64).map(|c| r * 100 + c).sum();
            check(&mut bad, &format!("row {r} reduction"), done.await.expect("sum") == want);
            check(&mut bad, &format!("row {r} allreduce"), ok.await.expect("ok") == cols as u32);
        }

        // A slice: every other column of rows 1..; and a section of that section.
        let sl = section(&a, Members::Slice(vec![SliceDim::new(1, rows, 1), SliceDim::new(0, cols, 2)]))
            .await
            .expect("slice");
        let got = sl.row().ret_all().await.expect("slice rows");
        let want: Vec<i32> =
            (1..rows).flat_map(|r| std::iter::repeat_n(r, (cols as usize).div_ceil(2))).collect();
        check(&mut bad, "slice multicast", got == want);
        let sub =
            section(&sl, Members::Slice(vec![SliceDim::new(rows - 1, rows, 1), SliceDim::new(0, cols, 1)]))
                .await
                .expect("section of a section");
        let got = sub.row().ret_all().await.expect("sub rows");
        check(&mut bad, "section of a section", got == vec![rows - 1; (cols as usize).div_ceil(2)]);

        // Two arrays combined: one multicast reaches both, one reduction spans both.
        let b = Array::<Cell>::new([2, 3], ()).await.expect("second array");
        let both = combine(&[a, b]).await.expect("combine");
        let n = both.row().ret_all().await.expect("combined").len();
        check(&mut bad, "combined multicast", n == (rows * cols + 6) as usize);
        let (done, ok) = (Future::<i64>::new(), Future::<u32>::new());
        both.reduce_in(both, done.clone(), ok.clone());
        let want: i64 =
            (0..rows as i64).flat_map(|r| (0..cols as i64).map(move |c| r * 100 + c)).sum::<i64>()
                + (0..2i64).flat_map(|r| (0..3i64).map(move |c| r * 100 + c)).sum::<i64>();
        check(&mut bad, "combined reduction", done.await.expect("sum") == want);
        check(&mut bad, "combined allreduce", ok.await.expect("ok") == (rows * cols + 6) as u32);

        // Group slices: even PEs; an empty section.
        let g = Group::<Member>::new(()).await.expect("group");
        let even = section(&g, Members::Slice(vec![SliceDim::new(0, p as i32, 2)])).await.expect("even");
        let got = even.pe().ret_all().await.expect("even pes");
        check(&mut bad, "group slice", got == (0..p).step_by(2).collect::<Vec<_>>());
        let none = section(&g, Members::Elems(vec![vec![]])).await.expect("empty");
        none.pe().awaitable().await.expect("empty awaitable");
        check(&mut bad, "empty section", none.pe().ret_all().await.expect("empty ret").is_empty());

        // A group constrained to some PEs: broadcasts and reductions involve them only.
        let ends: Vec<PeId> = if p > 1 { vec![PeId(0), PeId(p - 1)] } else { vec![PeId(0)] };
        let few = Group::<Member>::on_pes(ends.clone(), ()).await.expect("constrained group");
        let got = few.pe().ret_all().await.expect("constrained bcast");
        check(&mut bad, "constrained group broadcast", got == ends.iter().map(|p| p.0).collect::<Vec<_>>());

        // Misuse is an error, not a hang.
        let e = split(&a, 2, Members::All).await;
        check(&mut bad, "Members::All in two sections is refused", e.is_err());

        println!("sections on {p} PEs: {bad} mismatches");
        charmrs::exit(if bad == 0 { 0 } else { 1 });
    })
}
