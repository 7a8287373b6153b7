/* Pyroscope push: POST /ingest?name=APP{labels}&from=&until=&format=pprof with the gzipped pprof
 * as the body. Every push goes through an on-disk queue (OUT_DIR/queue, one file per push,
 * written atomically), so a backend outage or an agent restart loses nothing until the queue's
 * size cap; past the cap the oldest pushes are dropped and counted. A thread sends the queue in
 * order, retrying with exponential backoff. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <curl/curl.h>

#include "agent/internal.h"
#include "util/clock.h"
#include "util/dir.h"
#include "util/log.h"

#define QUEUE_SUFFIX ".push"
#define BACKOFF_MIN  1.0 /* seconds */

struct pusher {
	struct agent *a;
	char dir[4096];
	int dirfd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, kick;
	int64_t stop_deadline; /* monotonic ns: give up sending after this once stopping */
	uint64_t seq;
	CURL *curl;
};

void push__sanitize(const char *in, char *out, size_t len)
{
	size_t i = 0;

	for (; *in && i + 1 < len; in++)
		out[i++] = (isalnum((unsigned char)*in) || strchr("_-./:@+", *in)) ? *in : '_';
	out[i] = 0;
}

/* The queued pushes, oldest first (names start with a zero-padded wall-clock time). */
static int queue_list(struct pusher *p, struct dir_file **out, size_t *n)
{
	return dir__list(p->dirfd, QUEUE_SUFFIX, dir_file__cmp_name, out, n);
}

/* Keeps the queue under its cap by dropping the oldest; updates the gauges. Caller holds lock. */
static void queue_bound(struct pusher *p, uint64_t reserve)
{
	uint64_t total = 0, dropped = 0;
	struct dir_file *v = NULL;
	size_t n = 0, i;

	if (queue_list(p, &v, &n))
		return;
	for (i = 0; i < n; i++)
		total += v[i].size;
	for (i = 0; i < n && total + reserve > p->a->o->queue_max_size; i++) {
		if (unlinkat(p->dirfd, v[i].name, 0) == 0) {
			total -= v[i].size;
			dropped++;
		}
	}
	if (dropped)
		pr_warn("push: queue over %llu bytes: dropped the %llu oldest pushes\n",
			(unsigned long long)p->a->o->queue_max_size, (unsigned long long)dropped);
	pthread_mutex_lock(&p->a->lock);
	p->a->m.push_dropped += dropped;
	p->a->m.queue_bytes = total;
	p->a->m.queue_files = n - dropped;
	pthread_mutex_unlock(&p->a->lock);
	free(v);
}

static int write_file(int dirfd, const char *name, const char *head, const void *body, size_t len)
{
	char tmp[160];
	FILE *f;
	int fd, err = 0;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		err = -errno;
		close(fd);
		goto out;
	}
	if (fputs(head, f) == EOF || fwrite(body, 1, len, f) != len || fflush(f) ||
	    fdatasync(fileno(f)))
		err = -EIO;
	if (fclose(f) && !err)
		err = -errno;
	if (!err && renameat(dirfd, tmp, dirfd, name))
		err = -errno;
out:
	if (err)
		unlinkat(dirfd, tmp, 0);
	return err;
}

/* A queued push is the query string on its first line, then the body. */
int pusher__enqueue(struct pusher *p, const struct push_item *it)
{
	char *name = NULL, *labels = NULL, *q = NULL, *ename = NULL, fname[128];
	int err = -ENOMEM;

	if (asprintf(&name, "%s{%s}", it->app, it->labels) < 0)
		name = NULL;
	ename = name ? curl_easy_escape(NULL, name, 0) : NULL;
	if (!ename)
		goto out;
	if (asprintf(&q,
		     "name=%s&from=%lld&until=%lld&format=pprof&sampleRate=%d&spyName=cprof-bpf\n",
		     ename, (long long)it->from, (long long)it->until, it->freq) < 0) {
		q = NULL;
		goto out;
	}
	pthread_mutex_lock(&p->lock);
	snprintf(fname, sizeof(fname), "%020lld-%06llu%s", (long long)clock__ns(CLOCK_REALTIME),
		 (unsigned long long)(p->seq++ % 1000000), QUEUE_SUFFIX);
	queue_bound(p, it->len + strlen(q));
	err = write_file(p->dirfd, fname, q, it->body, it->len);
	if (!err) {
		p->kick = true;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_lock(&p->a->lock);
	if (err)
		p->a->m.push_dropped++;
	else
		p->a->m.push_enqueued++;
	pthread_mutex_unlock(&p->a->lock);
	if (err)
		pr_warn("push: cannot queue %s: %s (dropped)\n", name, strerror(-err));
out:
	free(name);
	free(labels);
	free(q);
	curl_free(ename);
	return err;
}

static int read_file(int dirfd, const char *name, char **buf, size_t *len)
{
	struct stat st;
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !(*buf = malloc(st.st_size + 1))) {
		close(fd);
		return -ENOMEM;
	}
	n = pread(fd, *buf, st.st_size, 0);
	if (n != st.st_size) {
		err = -EIO;
		free(*buf);
		*buf = NULL;
	} else {
		*len = (size_t)n;
	}
	close(fd);
	return err;
}

/* The request headers of a push: the body's type, the tenant and the bearer token. */
static struct curl_slist *push_headers(const struct cli_opts *o)
{
	struct curl_slist *hdrs = NULL;
	char *hdr = NULL;

	hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	if (o->tenant && asprintf(&hdr, "X-Scope-OrgID: %s", o->tenant) >= 0) {
		hdrs = curl_slist_append(hdrs, hdr);
		free(hdr);
		hdr = NULL;
	}
	if (o->bearer_token && asprintf(&hdr, "Authorization: Bearer %s", o->bearer_token) >= 0) {
		hdrs = curl_slist_append(hdrs, hdr);
		free(hdr);
	}
	return hdrs;
}

/* POSTs body to url with hdrs, within --push-timeout. *status gets the HTTP status when the
 * request went through (CURLE_OK). */
static CURLcode push_post(struct pusher *p, const char *url, const char *body, size_t len,
			  struct curl_slist *hdrs, long *status)
{
	const struct cli_opts *o = p->a->o;
	CURLcode rc;

	curl_easy_reset(p->curl);
	curl_easy_setopt(p->curl, CURLOPT_URL, url);
	curl_easy_setopt(p->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(p->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(p->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS, (long)(o->push_timeout * 1000));
	curl_easy_setopt(p->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->push_timeout * 1000));
	curl_easy_setopt(p->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(p->curl, CURLOPT_USERAGENT, "cprof-bpf/" CPROF_VERSION);
	if (o->basic_auth) {
		curl_easy_setopt(p->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(p->curl, CURLOPT_USERPWD, o->basic_auth);
	}
	rc = curl_easy_perform(p->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, status);
	return rc;
}

/* Adds one to a push counter of the agent's metrics. */
static void push_count(struct pusher *p, uint64_t *counter)
{
	pthread_mutex_lock(&p->a->lock);
	(*counter)++;
	pthread_mutex_unlock(&p->a->lock);
}

/* What the answer to a push means for its queued file fname: sent (removed), rejected for good
 * (removed, counted), or to retry. Returns 0 or -EAGAIN (retry). */
static int push_outcome(struct pusher *p, const char *fname, CURLcode rc, long status)
{
	const struct cli_opts *o = p->a->o;

	if (rc == CURLE_OK && status >= 200 && status < 300) {
		unlinkat(p->dirfd, fname, 0);
		push_count(p, &p->a->m.push_ok);
		return 0;
	}
	push_count(p, &p->a->m.push_failed);
	if (rc == CURLE_OK && status >= 400 && status < 500 && status != 408 && status != 429) {
		/* The server will never take this one (bad request, auth): retrying blocks the
		 * queue forever, so it is dropped and counted. */
		pr_warn("push: %s rejected it (HTTP %ld): dropped\n", o->push_url, status);
		unlinkat(p->dirfd, fname, 0);
		push_count(p, &p->a->m.push_rejected);
		return 0;
	}
	if (rc != CURLE_OK)
		pr_info("push: %s: %s; will retry\n", o->push_url, curl_easy_strerror(rc));
	else
		pr_info("push: %s answered HTTP %ld; will retry\n", o->push_url, status);
	return -EAGAIN;
}

/* Sends one queued push. Returns 0 (sent, or rejected for good: dropped), or -EAGAIN. */
static int send_one(struct pusher *p, const char *fname)
{
	const struct cli_opts *o = p->a->o;
	struct curl_slist *hdrs;
	char *buf = NULL, *nl, *url = NULL;
	long status = 0;
	size_t len = 0, ulen;
	CURLcode rc;
	int err;

	err = read_file(p->dirfd, fname, &buf, &len);
	if (err)
		return err == -ENOENT ? 0 : -EAGAIN;
	nl = memchr(buf, '\n', len);
	if (!nl) { /* not ours, or torn: it can never be sent */
		unlinkat(p->dirfd, fname, 0);
		free(buf);
		return 0;
	}
	*nl = 0;
	ulen = strlen(o->push_url);
	while (ulen && o->push_url[ulen - 1] == '/') /* "http://host:4040/" is fine too */
		ulen--;
	if (asprintf(&url, "%.*s/ingest?%s", (int)ulen, o->push_url, buf) < 0) {
		free(buf);
		return -EAGAIN;
	}
	hdrs = push_headers(o);
	rc = push_post(p, url, nl + 1, len - (nl + 1 - buf), hdrs, &status);
	curl_slist_free_all(hdrs);
	free(url);
	free(buf);
	return push_outcome(p, fname, rc, status);
}

/* Sends the queue oldest first until it is empty or a push fails; *listed says how many pushes
 * were waiting. Returns 0 or -EAGAIN. */
static int send_queue(struct pusher *p, size_t *listed)
{
	struct dir_file *v = NULL;
	size_t n = 0;
	int err = 0;

	*listed = 0;
	if (queue_list(p, &v, &n))
		return -EAGAIN;
	*listed = n;
	for (size_t i = 0; i < n && !err; i++) {
		pthread_mutex_lock(&p->lock);
		bool give_up = p->stop && clock__ns(CLOCK_MONOTONIC) > p->stop_deadline;
		pthread_mutex_unlock(&p->lock);
		if (give_up)
			err = -EAGAIN;
		else
			err = send_one(p, v[i].name);
	}
	free(v);
	pthread_mutex_lock(&p->lock);
	queue_bound(p, 0);
	pthread_mutex_unlock(&p->lock);
	return err;
}

static void *pusher_main(void *arg)
{
	struct pusher *p = arg;
	double backoff = 0;
	struct timespec until;
	size_t listed;
	int64_t wake;
	int err;

	for (;;) {
		err = send_queue(p, &listed);
		backoff = err ? (backoff ? backoff * 2 : BACKOFF_MIN) : 0;
		if (backoff > p->a->o->retry_max)
			backoff = p->a->o->retry_max;
		pthread_mutex_lock(&p->lock);
		if (p->stop) {
			/* Stopping: send what is queued (the last window was queued just now), and
			 * retry what failed, until the queue is empty or the grace period is over. */
			if ((!err && !listed) || clock__ns(CLOCK_MONOTONIC) > p->stop_deadline) {
				pthread_mutex_unlock(&p->lock);
				break;
			}
			if (!err) {
				pthread_mutex_unlock(&p->lock);
				continue;
			}
			wake = p->stop_deadline - clock__ns(CLOCK_MONOTONIC);
			if (wake > (int64_t)(backoff * 1e9))
				wake = (int64_t)(backoff * 1e9);
			until = clock__realtime_in(wake);
			pthread_cond_timedwait(&p->cond, &p->lock, &until);
			pthread_mutex_unlock(&p->lock);
			continue;
		}
		/* After a failure wait out the backoff (new pushes only queue up meanwhile); when
		 * all is sent, sleep until a push is queued. */
		until = clock__realtime_in((int64_t)((backoff ? backoff : 3600) * 1e9));
		while (!p->stop && (err || !p->kick) &&
		       pthread_cond_timedwait(&p->cond, &p->lock, &until) == 0)
			;
		p->kick = false;
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

int pusher__start(struct agent *a, struct pusher **out)
{
	struct pusher *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->a = a;
	p->dirfd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	snprintf(p->dir, sizeof(p->dir), "%s/queue", a->o->out_dir);
	err = dir__mkdirs(p->dir, AGENT_DIR_MODE);
	if (err) {
		pr_err("cannot create %s: %s\n", p->dir, strerror(-err));
		goto fail;
	}
	p->dirfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	p->curl = curl_easy_init();
	if (p->dirfd < 0 || !p->curl) {
		err = p->dirfd < 0 ? -errno : -ENOMEM;
		pr_err("cannot set up pushing to %s: %s\n", a->o->push_url, strerror(-err));
		goto fail;
	}
	queue_bound(p, 0);
	err = -pthread_create(&p->thread, NULL, pusher_main, p);
	if (err)
		goto fail;
	p->started = true;
	*out = p;
	return 0;
fail:
	pusher__stop(p, 0);
	return err;
}

void pusher__stop(struct pusher *p, double grace)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		p->stop_deadline = clock__ns(CLOCK_MONOTONIC) + (int64_t)(grace * 1e9);
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
	}
	if (p->curl)
		curl_easy_cleanup(p->curl);
	if (p->dirfd >= 0)
		close(p->dirfd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
