/* libmicrohttpd, libcurl and GnuTLS, loaded when first used rather than at start.
 *
 * Only serve, the agent's HTTP endpoint and its push need them (GnuTLS only for serve's check
 * of a TLS key against its certificate), but linked normally they and
 * what they pull in (GnuTLS, OpenSSL, Kerberos, LDAP, SSH, p11-kit: some thirty libraries)
 * are mapped and relocated, and their constructors run, in every process: about 5 MB of a
 * `record`'s resident memory, more than it uses for sampling. So the binary does not link them;
 * these definitions of the functions we call open the library (by its soname) on the first call
 * and forward to it. A library that cannot be opened makes its entry points fail the way they
 * fail for other reasons (MHD_start_daemon and curl_easy_init return NULL), with the reason
 * printed once. */
#define CURL_DISABLE_TYPECHECK /* the type-checking macros would rename the functions below */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "util/log.h"

struct lazy_lib {
	const char *soname;
	pthread_once_t once;
	void *handle;
};

static struct lazy_lib mhd = {"libmicrohttpd.so.12", PTHREAD_ONCE_INIT, NULL};
static struct lazy_lib curl = {"libcurl.so.4", PTHREAD_ONCE_INIT, NULL};
static struct lazy_lib gnutls = {"libgnutls.so.30", PTHREAD_ONCE_INIT, NULL};

/* Defines lazy_open_LIB(), which opens lib (run once, by pthread_once, which takes no
 * argument). */
#define LAZY_OPEN(lib)                                                                             \
	static void lazy_open_##lib(void)                                                          \
	{                                                                                          \
		lib.handle = dlopen(lib.soname, RTLD_NOW | RTLD_LOCAL);                            \
		if (!lib.handle)                                                                   \
			pr_err("cannot load %s: %s\n", lib.soname, dlerror());                     \
	}

LAZY_OPEN(mhd)
LAZY_OPEN(gnutls)
LAZY_OPEN(curl)

/* The address of name in lib, opening lib on first use; NULL when it cannot be had. */
static void *lazy_sym(struct lazy_lib *lib, void (*open_fn)(void), const char *name)
{
	pthread_once(&lib->once, open_fn);
	return lib->handle ? dlsym(lib->handle, name) : NULL;
}

/* Defines fn forwarding to the library's fn; fails with fail when it is missing. Each
 * function's address is looked up once (a race only stores the same pointer twice). */
#define LAZY(lib, ret, fn, fail, params, args)                                                     \
	ret fn params                                                                              \
	{                                                                                          \
		static ret(*real) params;                                                          \
		ret(*f) params = __atomic_load_n(&real, __ATOMIC_RELAXED);                         \
		if (!f) {                                                                          \
			f = (ret(*) params)lazy_sym(&lib, lazy_open_##lib, #fn);                   \
			if (!f)                                                                    \
				return fail;                                                       \
			__atomic_store_n(&real, f, __ATOMIC_RELAXED);                              \
		}                                                                                  \
		return f args;                                                                     \
	}

#define LAZY_VOID(lib, fn, params, args)                                                           \
	void fn params                                                                             \
	{                                                                                          \
		static void(*real) params;                                                         \
		void(*f) params = __atomic_load_n(&real, __ATOMIC_RELAXED);                        \
		if (!f) {                                                                          \
			f = (void(*) params)lazy_sym(&lib, lazy_open_##lib, #fn);                  \
			if (!f)                                                                    \
				return;                                                            \
			__atomic_store_n(&real, f, __ATOMIC_RELAXED);                              \
		}                                                                                  \
		f args;                                                                            \
	}

/* libmicrohttpd */
LAZY(mhd, struct MHD_Daemon *, MHD_start_daemon_va, NULL,
     (unsigned int flags, uint16_t port, MHD_AcceptPolicyCallback apc, void *apc_cls,
      MHD_AccessHandlerCallback dh, void *dh_cls, va_list ap),
     (flags, port, apc, apc_cls, dh, dh_cls, ap))
LAZY_VOID(mhd, MHD_stop_daemon, (struct MHD_Daemon * daemon), (daemon))
LAZY(mhd, enum MHD_Result, MHD_is_feature_supported, MHD_NO, (enum MHD_FEATURE feature), (feature))
LAZY(mhd, enum MHD_Result, MHD_add_response_header, MHD_NO,
     (struct MHD_Response * response, const char *header, const char *content),
     (response, header, content))
LAZY(mhd, int, MHD_get_connection_values, -1,
     (struct MHD_Connection * connection, enum MHD_ValueKind kind, MHD_KeyValueIterator iterator,
      void *iterator_cls),
     (connection, kind, iterator, iterator_cls))
LAZY(mhd, const char *, MHD_lookup_connection_value, NULL,
     (struct MHD_Connection * connection, enum MHD_ValueKind kind, const char *key),
     (connection, kind, key))
LAZY_VOID(mhd, MHD_free, (void *ptr), (ptr))
LAZY(mhd, enum MHD_Result, MHD_queue_response, MHD_NO,
     (struct MHD_Connection * connection, unsigned int status_code, struct MHD_Response *response),
     (connection, status_code, response))
LAZY_VOID(mhd, MHD_destroy_response, (struct MHD_Response * response), (response))
LAZY(mhd, struct MHD_Response *, MHD_create_response_from_buffer, NULL,
     (size_t size, void *buffer, enum MHD_ResponseMemoryMode mode), (size, buffer, mode))
LAZY(mhd, char *, MHD_basic_auth_get_username_password, NULL,
     (struct MHD_Connection * connection, char **password), (connection, password))

LAZY(mhd, enum MHD_Result, MHD_add_connection, MHD_NO,
     (struct MHD_Daemon * daemon, MHD_socket client_socket, const struct sockaddr *addr,
      socklen_t addrlen),
     (daemon, client_socket, addr, addrlen))
LAZY(mhd, int, MHD_get_connection_values_n, -1,
     (struct MHD_Connection * connection, enum MHD_ValueKind kind, MHD_KeyValueIteratorN iterator,
      void *iterator_cls),
     (connection, kind, iterator, iterator_cls))

/* GnuTLS, only to check a TLS key against its certificate before libmicrohttpd loads them. */
LAZY(gnutls, int, gnutls_certificate_allocate_credentials, GNUTLS_E_INTERNAL_ERROR,
     (gnutls_certificate_credentials_t * res), (res))
LAZY_VOID(gnutls, gnutls_certificate_free_credentials, (gnutls_certificate_credentials_t sc), (sc))
LAZY(gnutls, int, gnutls_certificate_set_x509_key_mem, GNUTLS_E_INTERNAL_ERROR,
     (gnutls_certificate_credentials_t res, const gnutls_datum_t *cert, const gnutls_datum_t *key,
      gnutls_x509_crt_fmt_t type),
     (res, cert, key, type))
LAZY(gnutls, const char *, gnutls_strerror, "GnuTLS not loaded", (int error), (error))

/* The variadic ones, through their va_list form or their one argument. */
struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port, MHD_AcceptPolicyCallback apc,
				    void *apc_cls, MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
	struct MHD_Daemon *d;
	va_list ap;

	va_start(ap, dh_cls);
	d = MHD_start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
	va_end(ap);
	return d;
}

/* Every option we use (MHD_CONNECTION_OPTION_TIMEOUT) takes one unsigned int. */
enum MHD_Result MHD_set_connection_option(struct MHD_Connection *connection,
					  enum MHD_CONNECTION_OPTION option, ...)
{
	enum MHD_Result (*f)(struct MHD_Connection *, enum MHD_CONNECTION_OPTION, ...);
	unsigned int value;
	va_list ap;

	f = lazy_sym(&mhd, lazy_open_mhd, "MHD_set_connection_option");
	if (!f)
		return MHD_NO;
	va_start(ap, option);
	value = va_arg(ap, unsigned int);
	va_end(ap);
	return f(connection, option, value);
}

/* The info types we ask about take no further argument. */
const union MHD_ConnectionInfo *MHD_get_connection_info(struct MHD_Connection *connection,
							enum MHD_ConnectionInfoType info_type, ...)
{
	const union MHD_ConnectionInfo *(*f)(struct MHD_Connection *, enum MHD_ConnectionInfoType,
					     ...);

	f = lazy_sym(&mhd, lazy_open_mhd, "MHD_get_connection_info");
	return f ? f(connection, info_type) : NULL;
}

/* libcurl */
LAZY(curl, CURLcode, curl_global_init, CURLE_FAILED_INIT, (long flags), (flags))
LAZY_VOID(curl, curl_global_cleanup, (void), ())
LAZY(curl, CURL *, curl_easy_init, NULL, (void), ())
LAZY(curl, CURLcode, curl_easy_perform, CURLE_FAILED_INIT, (CURL * h), (h))
LAZY_VOID(curl, curl_easy_cleanup, (CURL * h), (h))
LAZY_VOID(curl, curl_easy_reset, (CURL * h), (h))
LAZY(curl, const char *, curl_easy_strerror, "libcurl not loaded", (CURLcode code), (code))
LAZY(curl, char *, curl_easy_escape, NULL, (CURL * h, const char *s, int len), (h, s, len))
LAZY_VOID(curl, curl_free, (void *p), (p))
LAZY(curl, struct curl_slist *, curl_slist_append, NULL, (struct curl_slist * list, const char *s),
     (list, s))
LAZY_VOID(curl, curl_slist_free_all, (struct curl_slist * list), (list))

/* One argument of the type the option's number says (curl.h's CURLOPTTYPE_ ranges). */
CURLcode curl_easy_setopt(CURL *h, CURLoption option, ...)
{
	CURLcode (*f)(CURL *, CURLoption, ...);
	CURLcode rc;
	va_list ap;

	f = lazy_sym(&curl, lazy_open_curl, "curl_easy_setopt");
	if (!f)
		return CURLE_FAILED_INIT;
	va_start(ap, option);
	if (option < CURLOPTTYPE_OBJECTPOINT)
		rc = f(h, option, va_arg(ap, long));
	else if (option < CURLOPTTYPE_FUNCTIONPOINT)
		rc = f(h, option, va_arg(ap, void *));
	else if (option < CURLOPTTYPE_OFF_T)
		rc = f(h, option, va_arg(ap, void (*)(void)));
	else if (option < CURLOPTTYPE_BLOB)
		rc = f(h, option, va_arg(ap, curl_off_t));
	else
		rc = f(h, option, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

/* Every CURLINFO takes one pointer. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	CURLcode (*f)(CURL *, CURLINFO, ...);
	void *arg;
	va_list ap;

	f = lazy_sym(&curl, lazy_open_curl, "curl_easy_getinfo");
	if (!f)
		return CURLE_FAILED_INIT;
	va_start(ap, info);
	arg = va_arg(ap, void *);
	va_end(ap);
	return f(h, info, arg);
}
