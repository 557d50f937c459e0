package main

import (
	"fmt"
	"io"
	"strings"
)

// nodeMem is one cluster node's idle memory: before connecting, and after
// every connection is open and has settled.
type nodeMem struct {
	Name   string  `json:"name"`
	Before procMem `json:"before"`
	After  procMem `json:"after"`
	// Local counts the connections open on this node; Remote the users
	// online only on other nodes, whose interest this node holds.
	Local      int   `json:"local_connections"`
	Remote     int   `json:"remote_users"`
	DeltaBytes int64 `json:"rss_delta_bytes"`
	AnonDelta  int64 `json:"rss_anon_delta_bytes"`
	// BytesPerLocal is ΔVmRSS / Local: a local connection's cost, with
	// whatever the node spends on its remote users folded in.
	BytesPerLocal float64 `json:"rss_bytes_per_local_conn,omitempty"`
	// BytesPerRemote is ΔVmRSS / Remote, for a node with no local
	// connection: the cost of a user online elsewhere.
	BytesPerRemote float64 `json:"rss_bytes_per_remote_user,omitempty"`
}

// clusterMem is the idle-memory part of a cluster run's report.
type clusterMem struct {
	SettleSeconds float64   `json:"settle_seconds"`
	Connections   int       `json:"connections"`
	Nodes         []nodeMem `json:"nodes"`
	// BytesPerUser is ΔVmRSS summed over the nodes / connections: what
	// one online user costs the cluster as a whole.
	BytesPerUser float64 `json:"rss_bytes_per_user_cluster"`
	// BytesPerRemote is the mean of the nodes' BytesPerRemote, over the
	// nodes without local connections (place n0); 0 when there are none.
	BytesPerRemote float64 `json:"rss_bytes_per_remote_user,omitempty"`
	AnonPerRemote  float64 `json:"rss_anon_bytes_per_remote_user,omitempty"`
}

// clusterMemory works out each node's memory cost from before and after,
// both as bench.nodes. A user counts where its connection is open.
func (b *bench) clusterMemory(before, after []procMem) *clusterMem {
	local := make([]int, len(b.nodes))
	total := 0
	for _, c := range b.clients {
		if c.up.Load() {
			local[c.home]++
			total++
		}
	}
	m := &clusterMem{SettleSeconds: b.cfg.Settle.Seconds(), Connections: total}
	var sum, remoteSum, anonSum int64
	var remoteUsers int
	for i, n := range b.nodes {
		nm := nodeMem{Name: n.name, Before: before[i], After: after[i], Local: local[i],
			Remote: total - local[i], DeltaBytes: after[i].RSS - before[i].RSS,
			AnonDelta: after[i].RSSAnon - before[i].RSSAnon}
		sum += nm.DeltaBytes
		if nm.Local > 0 {
			nm.BytesPerLocal = float64(nm.DeltaBytes) / float64(nm.Local)
		} else if nm.Remote > 0 {
			nm.BytesPerRemote = float64(nm.DeltaBytes) / float64(nm.Remote)
			remoteSum += nm.DeltaBytes
			anonSum += nm.AnonDelta
			remoteUsers += nm.Remote
		}
		m.Nodes = append(m.Nodes, nm)
	}
	if total > 0 {
		m.BytesPerUser = float64(sum) / float64(total)
	}
	if remoteUsers > 0 {
		m.BytesPerRemote = float64(remoteSum) / float64(remoteUsers)
		m.AnonPerRemote = float64(anonSum) / float64(remoteUsers)
	}
	return m
}

// placement describes where the connections go, for the log; "" for one
// node.
func (b *bench) placement() string {
	if len(b.nodes) == 1 {
		return ""
	}
	if b.cfg.Place == "n0" {
		return ", all on n0"
	}
	return fmt.Sprintf(", spread over %d nodes, every recipient on another node than its sender",
		len(b.nodes))
}

func (r *report) textClusterNodes(w io.Writer) {
	if len(r.Nodes) == 0 {
		return
	}
	p, _ := r.Params["place"].(string)
	fmt.Fprintf(w, "  cluster:  %d child nodes, connections placed %q, version %q\n",
		len(r.Nodes), p, r.Nodes[0].Version)
	for _, n := range r.Nodes {
		fmt.Fprintf(w, "    %s: pid %d, http %s, fd limit %d", n.Name, n.PID, n.HTTP, n.FDLimit)
		if n.ExitStatus != "" {
			fmt.Fprintf(w, "; stopped in %.1fs: %s", n.StopSeconds, n.ExitStatus)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "    n0 args: %s\n", strings.Join(r.Nodes[0].Args, " "))
}

func (r *report) textClusterMemory(w io.Writer) {
	m := r.ClusterMem
	if m == nil {
		return
	}
	fmt.Fprintf(w, "idle mem:   VmRSS per node, before and after %d connections + %.0fs settle:\n",
		m.Connections, m.SettleSeconds)
	for _, n := range m.Nodes {
		fmt.Fprintf(w, "    %s: %s -> %s (%+.1f MiB, RssAnon %+.1f MiB), %d local, %d remote users",
			n.Name, mib(n.Before.RSS), mib(n.After.RSS), float64(n.DeltaBytes)/(1<<20),
			float64(n.AnonDelta)/(1<<20), n.Local, n.Remote)
		switch {
		case n.BytesPerLocal != 0:
			fmt.Fprintf(w, ": %.1f KiB per local connection\n", n.BytesPerLocal/1024)
		case n.BytesPerRemote != 0:
			fmt.Fprintf(w, ": %.2f KiB per remote user\n", n.BytesPerRemote/1024)
		default:
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "    cluster: %.1f KiB per online user (ΔVmRSS of all nodes / connections)\n",
		m.BytesPerUser/1024)
	if m.BytesPerRemote != 0 {
		fmt.Fprintf(w, "    memory per remote online user: %.2f KiB (RssAnon %.2f KiB), "+
			"mean over the nodes without connections\n", m.BytesPerRemote/1024, m.AnonPerRemote/1024)
	}
}

// nodesCPU is ", n0 0.50, n1 0.40, …" for a cluster phase, else "".
func nodesCPU(p *phaseResult) string {
	if len(p.NodesCPU) == 0 {
		return ""
	}
	parts := make([]string, len(p.NodesCPU))
	for i, c := range p.NodesCPU {
		parts[i] = fmt.Sprintf("n%d %.2f", i, c)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
