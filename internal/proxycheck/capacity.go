package proxycheck

import (
	"fmt"
	"io"
	"strconv"
)

// Report is the outcome of a check: what was read, how many held clients
// the web server carries, and what to change when that is below the target.
type Report struct {
	Server      string   // "nginx" or "apache2"
	Facts       []string // the limits read, one line each, with what they mean
	HeldClients int      // held clients carried for sure
	BestCase    int      // nginx: when the kernel spreads connections evenly over the workers
	Target      int      // held clients asked for
	Changes     []string // what to change, when HeldClients < Target
	Notes       []string // advice that does not change the figure
}

// OK says whether the web server carries the target.
func (r *Report) OK() bool { return r.HeldClients >= r.Target }

// Write prints the report for a person.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "%s:\n", r.Server)
	for _, f := range r.Facts {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintf(w, "capacity: %s held clients (long polls, SSE streams, WebSockets)", thousands(r.HeldClients))
	if r.BestCase > r.HeldClients {
		fmt.Fprintf(w, " for sure, up to %s when the kernel spreads them evenly over the workers", thousands(r.BestCase))
	}
	fmt.Fprintln(w)
	if r.OK() {
		fmt.Fprintf(w, "OK: enough for %s held clients\n", thousands(r.Target))
	} else {
		fmt.Fprintf(w, "TOO SMALL for %s held clients; change:\n", thousands(r.Target))
		for _, c := range r.Changes {
			fmt.Fprintf(w, "  - %s\n", c)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// thousands writes n with commas: 16,384.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// NginxRuntime is what the caller knows beyond the configuration.
type NginxRuntime struct {
	CPUs          int    // what worker_processes auto starts
	Workers       int    // workers of the running nginx; 0 when not running
	OpenFiles     int    // open-file limit of the workers when worker_rlimit_nofile is unset
	OpenFilesFrom string // where OpenFiles comes from, for the report
}

// Held clients that Stardust's conf/nginx/nginx.conf (per worker) and
// conf/apache2/mpm_event.conf carry; the tests check these against the files.
const (
	nginxShippedHeld  = 8192
	apacheShippedHeld = 1984
)

// nginxFileReserve is what a worker keeps open besides connections: logs,
// listening sockets, files being sent.
const nginxFileReserve = 64

// NginxCapacity works out how many held clients an nginx configuration
// carries: each takes two connections of one worker (the client's and the
// one to Stardust), a worker has worker_connections of them and no more than
// its open-file limit allows, and nothing makes the kernel hand connections
// to the workers evenly, so one worker's share is the figure for sure.
func NginxCapacity(c *NginxConfig, rt NginxRuntime, target int) *Report {
	r := &Report{Server: "nginx", Target: target}
	workers, from := rt.CPUs, "auto: one per CPU"
	switch {
	case c.WorkerProcesses == "auto" && rt.Workers > 0:
		workers, from = rt.Workers, "auto: running workers"
	case c.WorkerProcesses == "":
		workers, from = 1, "unset: 1"
	case c.WorkerProcesses != "auto":
		workers, _ = strconv.Atoi(c.WorkerProcesses)
		from = "set"
	}
	workers = max(workers, 1)
	r.Facts = append(r.Facts, fmt.Sprintf("worker_processes: %d (%s)", workers, from))
	conns := c.WorkerConnections
	if conns == 0 {
		conns = NginxDefaultWorkerConnections
		r.Facts = append(r.Facts, fmt.Sprintf("worker_connections: %d per worker (unset: nginx's default)", conns))
	} else {
		r.Facts = append(r.Facts, fmt.Sprintf("worker_connections: %d per worker, counting both sides of every proxied request", conns))
	}
	files := c.WorkerRlimitNofile
	if files > 0 {
		r.Facts = append(r.Facts, fmt.Sprintf("worker_rlimit_nofile: %d open files per worker (set)", files))
	} else {
		files = rt.OpenFiles
		r.Facts = append(r.Facts, fmt.Sprintf("worker_rlimit_nofile: unset; workers keep %d open files (%s)", files, rt.OpenFilesFrom))
	}
	usable := conns
	if files-nginxFileReserve < usable {
		usable = max(files-nginxFileReserve, 0)
		r.Facts = append(r.Facts, fmt.Sprintf("the open-file limit allows only %d of the worker_connections", usable))
	}
	perWorker := usable / 2
	r.Facts = append(r.Facts, fmt.Sprintf("each held client takes 2 connections of one worker: %d held clients per worker", perWorker))
	r.HeldClients, r.BestCase = perWorker, perWorker*workers
	if !r.OK() {
		need := roundUp(2*target+nginxFileReserve, 1024)
		if conns < need {
			r.Changes = append(r.Changes, fmt.Sprintf("worker_connections %d; in events {} (2 per held client, on one worker)", need))
		}
		if c.WorkerRlimitNofile < need+need/4 {
			r.Changes = append(r.Changes, fmt.Sprintf("worker_rlimit_nofile %d; in the main context (above worker_connections, for files and logs; nginx raises the limit itself)", roundUp(need+need/4, 1024)))
		}
		if target <= nginxShippedHeld {
			r.Changes = append(r.Changes, "or install Stardust's conf/nginx/nginx.conf (8,000 held clients per worker) as /etc/nginx/nginx.conf, then nginx -t && systemctl reload nginx")
		}
	}
	if !c.MultiAccept {
		r.Notes = append(r.Notes, "multi_accept on; in events {} lets a worker take a burst of reconnecting long polls at once")
	}
	return r
}

// Defaults of apache2's threaded MPMs (event, worker) and of prefork.
const (
	apacheDefaultServerLimit     = 16
	apacheDefaultThreadLimit     = 64
	apacheDefaultThreadsPerChild = 25
	apachePreforkDefaultLimit    = 256
	// apacheReserve: threads kept for pages and publishes, at most.
	apacheReserve = 64
)

// ApacheCapacity works out how many held clients an apache2 configuration
// carries. mod_proxy keeps a worker thread (a process under prefork) for
// the whole of a proxied request, a held long poll or an SSE stream as much
// as a WebSocket tunnel (apache2 2.4 has no asynchronous tunnelling), so
// MaxRequestWorkers is the limit, less the threads kept for the site's
// pages and the publishes (one process's, 64 at most). A request sent on a
// kept-alive connection waits for a thread of the process that accepted
// the connection, so that with several processes a publish can wait
// behind a process full of held polls: said in a note.
func ApacheCapacity(c *ApacheConfig, target int) *Report {
	r := &Report{Server: "apache2", Target: target}
	if c.MPM == "prefork" {
		limit := c.ServerLimit
		if limit == 0 {
			limit = apachePreforkDefaultLimit
		}
		mrw := c.MaxRequestWorkers
		if mrw == 0 || mrw > limit {
			mrw = limit
		}
		r.Facts = append(r.Facts, "MPM: prefork, one process per request", fmt.Sprintf("MaxRequestWorkers: %d processes", mrw))
		r.HeldClients = max(mrw-10, 0)
		if !r.OK() {
			r.Changes = append(r.Changes, "a2dismod mpm_prefork && a2enmod mpm_event, then install Stardust's conf/apache2/mpm_event.conf: a process per held client costs megabytes, a thread tens of kilobytes")
		}
		return r
	}
	mpm := c.MPM
	if mpm == "" {
		mpm = "unknown (read as event)"
	}
	r.Facts = append(r.Facts, "MPM: "+mpm)
	threadLimit := orDefault(c.ThreadLimit, apacheDefaultThreadLimit)
	tpc := orDefault(c.ThreadsPerChild, apacheDefaultThreadsPerChild)
	if tpc > threadLimit {
		r.Facts = append(r.Facts, fmt.Sprintf("ThreadsPerChild %d is above ThreadLimit %d: apache2 uses %d", tpc, threadLimit, threadLimit))
		tpc = threadLimit
	}
	serverLimit := orDefault(c.ServerLimit, apacheDefaultServerLimit)
	mrw := orDefault(c.MaxRequestWorkers, serverLimit*tpc)
	if mrw > serverLimit*tpc {
		r.Facts = append(r.Facts, fmt.Sprintf("MaxRequestWorkers %d is above ServerLimit %d × ThreadsPerChild %d: apache2 uses %d", mrw, serverLimit, tpc, serverLimit*tpc))
		mrw = serverLimit * tpc
	}
	mrw = max(mrw/tpc*tpc, tpc) // apache2 rounds it to whole processes
	reserve := min(tpc, apacheReserve)
	r.Facts = append(r.Facts,
		fmt.Sprintf("ThreadsPerChild: %d, ServerLimit: %d, MaxRequestWorkers: %d threads", tpc, serverLimit, mrw),
		fmt.Sprintf("each held client keeps a thread for the whole hold; %d threads stay for pages and publishes", reserve))
	r.HeldClients = mrw - reserve
	if mrw > tpc {
		r.Notes = append(r.Notes, fmt.Sprintf("the threads are in %d processes of %d: a publish or page sent on a kept-alive connection waits for a thread of its own process, up to a whole hold once that process's threads all hold polls (clients on one channel polling again together fill them), or fails when apache2 closes the connection; Stardust's conf/apache2/mpm_event.conf puts all the threads in one process (ThreadsPerChild = MaxRequestWorkers)", mrw/tpc, tpc))
	}
	if len(c.ProxyPasses) == 0 {
		r.Notes = append(r.Notes, "no ProxyPass found: is Stardust's site enabled (a2ensite stardust)?")
	}
	if !r.OK() {
		need := roundUp(target+64, 64)
		r.Changes = append(r.Changes,
			fmt.Sprintf("ThreadsPerChild %[1]d, ThreadLimit %[1]d, ServerLimit 3, MaxRequestWorkers %[1]d in /etc/apache2/mods-available/mpm_event.conf (one process: see conf/apache2/mpm_event.conf)%[2]s, then systemctl restart apache2 (50 to 80 KiB per held client)", need, apacheFiles(need)),
		)
		if target <= apacheShippedHeld {
			r.Changes = append(r.Changes, "or install Stardust's conf/apache2/mpm_event.conf there (2,048 threads, 1,984 held clients)")
		}
	}
	return r
}

// apacheFiles is the advice on open files for one process of threads
// threads: up to a client and a back-end connection per thread, and
// keep-alive connections besides; apache2ctl's 8192 is enough up to 2,700.
func apacheFiles(threads int) string {
	need := roundUp(3*threads+64, 1024)
	if need <= 8192 {
		return ""
	}
	return fmt.Sprintf(", APACHE_ULIMIT_MAX_FILES='ulimit -n %d' in /etc/apache2/envvars", need)
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }
