//! Memory figures (printed only, nothing is timed): the size of one message envelope
//! and the runtime's overhead per idle chare, from `charmrs::__private::sizes()`,
//! against the goals (envelope <= 64 B, idle chare <= 128 B). The lower bound of an
//! envelope is the payload box alone (16 B for a `Box<dyn Any>`), printed for reference.

fn main() {
    let s = charmrs::__private::sizes();
    let verdict = |v: usize, goal: usize| if v <= goal { "met" } else { "NOT met" };
    let boxed = std::mem::size_of::<Box<dyn std::any::Any + Send>>();
    println!(
        "MEMORY envelope: {} B (payload box alone {boxed} B; goal <= 64 B: {})",
        s.envelope,
        verdict(s.envelope, 64)
    );
    println!("MEMORY inbox_node (envelope + link, per message between PEs): {} B", s.inbox_node);
    println!(
        "MEMORY chare_overhead (per idle chare, beyond the user's struct): {} B (goal <= 128 B: {})",
        s.chare_overhead,
        verdict(s.chare_overhead, 128)
    );
}
