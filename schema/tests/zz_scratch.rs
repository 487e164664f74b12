use postmesh_schema::pattern::topic_match;
use postmesh_schema::Pattern;

fn seqs(alpha: &[&str], max: usize, min: usize) -> Vec<String> {
    let mut out = vec![];
    if min == 0 { out.push(String::new()); }
    let mut cur: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..max {
        let mut next = vec![];
        for c in &cur { for x in alpha { let mut d = c.clone(); d.push(x); next.push(d); } }
        out.extend(next.iter().map(|v| v.join(".")));
        cur = next;
    }
    out
}
fn bits(p: &str, ks: &[String]) -> Vec<u64> {
    let mut v = vec![0u64; ks.len().div_ceil(64)];
    for (i, k) in ks.iter().enumerate() { if topic_match(p, k) { v[i/64] |= 1 << (i%64); } }
    v
}
fn sub(b: &[u64], a: &[u64]) -> bool { b.iter().zip(a).all(|(x, y)| x & !y == 0) }

#[test]
fn explore() {
    let ps = seqs(&["a", "b", "*", "#"], 4, 1);
    let k6 = seqs(&["a", "b", "c"], 6, 0);
    let k9 = seqs(&["a", "b", "c"], 9, 0);
    let b6: Vec<_> = ps.iter().map(|p| bits(p, &k6)).collect();
    let b9: Vec<_> = ps.iter().map(|p| bits(p, &k9)).collect();
    let (mut fin_diff, mut incompl, mut incompl_restricted, mut unsound) = (0, 0, 0, 0);
    for (i, a) in ps.iter().enumerate() { for (j, b) in ps.iter().enumerate() {
        let sem6 = sub(&b6[j], &b6[i]);
        let sem9 = sub(&b9[j], &b9[i]);
        if sem6 != sem9 { fin_diff += 1; if fin_diff < 5 { println!("finite diff {a} {b}"); } }
        let c = Pattern::parse(a).unwrap().covers(&Pattern::parse(b).unwrap());
        if c && !sem9 { unsound += 1; println!("UNSOUND {a} covers {b}"); }
        if !c && sem9 { incompl += 1;
            if !a.split('.').any(|w| w == "*") || !b.split('.').any(|w| w == "#") { incompl_restricted += 1; if incompl_restricted < 20 { println!("restricted incomplete {a} !covers {b}"); } }
        }
    }}
    println!("n={} fin_diff={fin_diff} incompl={incompl} restricted={incompl_restricted} unsound={unsound}", ps.len());
}
