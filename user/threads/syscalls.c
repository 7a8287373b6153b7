/* x86-64 syscall names. The numbers come from <asm/unistd_64.h>; the list names every syscall of
 * the Linux 6.1 headers Debian 12 ships. Newer ones print as "syscall N". */
#include <stddef.h>
#include <asm/unistd_64.h>

#include "threads/snapshot.h"

#define SC(n) [__NR_##n] = #n,

static const char *const names[] = {
	SC(read) SC(write) SC(open) SC(close) SC(stat) SC(fstat) SC(lstat) SC(poll) SC(lseek) SC(
		mmap) SC(mprotect) SC(munmap) SC(brk) SC(rt_sigaction) SC(rt_sigprocmask)
		SC(rt_sigreturn) SC(ioctl) SC(pread64) SC(pwrite64) SC(readv) SC(writev) SC(
			access) SC(pipe) SC(select) SC(sched_yield) SC(mremap) SC(msync) SC(mincore)
			SC(madvise) SC(shmget) SC(shmat) SC(shmctl) SC(dup) SC(dup2) SC(pause) SC(
				nanosleep) SC(getitimer) SC(alarm) SC(setitimer) SC(getpid)
				SC(sendfile) SC(socket) SC(connect) SC(accept) SC(sendto) SC(
					recvfrom) SC(sendmsg) SC(recvmsg) SC(shutdown) SC(bind) SC(listen) SC(getsockname) SC(getpeername)
					SC(socketpair) SC(setsockopt) SC(getsockopt) SC(clone) SC(fork) SC(
						vfork) SC(execve) SC(exit) SC(wait4) SC(kill)
						SC(uname) SC(semget) SC(semop) SC(semctl) SC(shmdt) SC(msgget) SC(
							msgsnd) SC(msgrcv) SC(msgctl) SC(fcntl)
							SC(flock) SC(fsync) SC(fdatasync) SC(truncate) SC(
								ftruncate) SC(getdents) SC(getcwd) SC(chdir)
								SC(fchdir) SC(rename) SC(
									mkdir) SC(rmdir) SC(creat) SC(link)
									SC(unlink) SC(symlink) SC(readlink) SC(
										chmod) SC(fchmod) SC(chown)
										SC(fchown) SC(lchown) SC(
											umask) SC(gettimeofday)
											SC(getrlimit) SC(
												getrusage)
												SC(sysinfo) SC(
													times)
													SC(ptrace)
														SC(getuid)
															SC(syslog)
																SC(getgid)
																	SC(setuid) SC(setgid) SC(geteuid) SC(getegid) SC(setpgid) SC(getppid) SC(getpgrp) SC(setsid) SC(setreuid) SC(setregid) SC(getgroups) SC(setgroups) SC(setresuid) SC(getresuid) SC(setresgid) SC(getresgid) SC(getpgid) SC(setfsuid) SC(setfsgid) SC(getsid) SC(capget) SC(capset) SC(rt_sigpending) SC(rt_sigtimedwait) SC(rt_sigqueueinfo) SC(rt_sigsuspend) SC(sigaltstack) SC(utime) SC(mknod) SC(uselib) SC(personality) SC(ustat) SC(statfs) SC(fstatfs)
																		SC(sysfs) SC(getpriority) SC(
																			setpriority) SC(sched_setparam)
																			SC(sched_getparam)
																				SC(sched_setscheduler)
																					SC(sched_getscheduler)
																						SC(
																							sched_get_priority_max) SC(sched_get_priority_min) SC(sched_rr_get_interval) SC(mlock)
																							SC(munlock)
																								SC(mlockall)
																									SC(munlockall)
																										SC(vhangup)
																											SC(modify_ldt) SC(pivot_root) SC(_sysctl) SC(prctl)
																												SC(arch_prctl)
																													SC(adjtimex)
																														SC(setrlimit)
																															SC(chroot)
																																SC(sync)
																																	SC(
																																		acct) SC(settimeofday)
																																		SC(mount)
																																			SC(umount2) SC(swapon) SC(swapoff) SC(reboot)
																																				SC(sethostname)
																																					SC(setdomainname)
																																						SC(
																																							iopl) SC(ioperm) SC(create_module)
																																							SC(init_module)
																																								SC(delete_module)
																																									SC(get_kernel_syms) SC(query_module) SC(
																																										quotactl)
																																										SC(nfsservctl) SC(
																																											getpmsg) SC(putpmsg) SC(afs_syscall)
																																											SC(tuxcall) SC(security) SC(gettid) SC(
																																												readahead)
																																												SC(setxattr)
																																													SC(lsetxattr)
																																														SC(fsetxattr)
																																															SC(getxattr) SC(lgetxattr) SC(fgetxattr) SC(listxattr) SC(
																																																llistxattr)
																																																SC(flistxattr) SC(removexattr) SC(
																																																	lremovexattr)
																																																	SC(fremovexattr)
																																																		SC(tkill)
																																																			SC(
																																																				time) SC(futex)
																																																				SC(sched_setaffinity)
																																																					SC(sched_getaffinity) SC(
																																																						set_thread_area) SC(io_setup) SC(io_destroy)
																																																						SC(io_getevents) SC(io_submit) SC(io_cancel) SC(
																																																							get_thread_area)
																																																							SC(lookup_dcookie)
																																																								SC(epoll_create) SC(epoll_ctl_old) SC(epoll_wait_old) SC(remap_file_pages) SC(
																																																									getdents64) SC(set_tid_address) SC(restart_syscall) SC(semtimedop) SC(fadvise64) SC(timer_create) SC(timer_settime)
																																																									SC(timer_gettime)
																																																										SC(
																																																											timer_getoverrun) SC(timer_delete) SC(clock_settime) SC(clock_gettime) SC(clock_getres) SC(clock_nanosleep) SC(exit_group)
																																																											SC(epoll_wait) SC(
																																																												epoll_ctl) SC(tgkill)
																																																												SC(utimes)
																																																													SC(
																																																														vserver) SC(mbind) SC(set_mempolicy) SC(get_mempolicy) SC(mq_open) SC(mq_unlink) SC(mq_timedsend)
																																																														SC(mq_timedreceive)
																																																															SC(mq_notify) SC(
																																																																mq_getsetattr) SC(kexec_load) SC(waitid)
																																																																SC(add_key) SC(
																																																																	request_key)
																																																																	SC(
																																																																		keyctl) SC(ioprio_set) SC(ioprio_get) SC(inotify_init) SC(inotify_add_watch) SC(inotify_rm_watch) SC(migrate_pages) SC(openat) SC(mkdirat) SC(mknodat)
																																																																		SC(fchownat) SC(
																																																																			futimesat)
																																																																			SC(newfstatat) SC(unlinkat) SC(renameat) SC(linkat) SC(
																																																																				symlinkat) SC(readlinkat) SC(fchmodat) SC(faccessat) SC(pselect6)
																																																																				SC(ppoll) SC(unshare) SC(set_robust_list) SC(
																																																																					get_robust_list) SC(splice) SC(tee) SC(sync_file_range)
																																																																					SC(vmsplice) SC(move_pages) SC(
																																																																						utimensat) SC(epoll_pwait) SC(signalfd) SC(timerfd_create) SC(eventfd) SC(fallocate) SC(timerfd_settime) SC(timerfd_gettime) SC(accept4) SC(signalfd4) SC(eventfd2)
																																																																						SC(epoll_create1) SC(dup3) SC(
																																																																							pipe2) SC(inotify_init1)
																																																																							SC(preadv) SC(pwritev) SC(rt_tgsigqueueinfo) SC(perf_event_open) SC(
																																																																								recvmmsg)
																																																																								SC(fanotify_init)
																																																																									SC(
																																																																										fanotify_mark) SC(prlimit64) SC(name_to_handle_at) SC(open_by_handle_at) SC(clock_adjtime) SC(syncfs) SC(sendmmsg) SC(setns) SC(getcpu)
																																																																										SC(process_vm_readv) SC(process_vm_writev) SC(kcmp) SC(
																																																																											finit_module) SC(sched_setattr) SC(sched_getattr) SC(renameat2) SC(seccomp)
																																																																											SC(getrandom) SC(memfd_create) SC(kexec_file_load) SC(bpf) SC(
																																																																												execveat) SC(userfaultfd) SC(membarrier)
																																																																												SC(mlock2) SC(copy_file_range) SC(preadv2) SC(pwritev2) SC(pkey_mprotect) SC(pkey_alloc) SC(pkey_free) SC(statx) SC(io_pgetevents) SC(rseq) SC(
																																																																													pidfd_send_signal) SC(io_uring_setup) SC(io_uring_enter) SC(io_uring_register) SC(open_tree) SC(move_mount) SC(fsopen) SC(fsconfig)
																																																																													SC(fsmount) SC(
																																																																														fspick) SC(pidfd_open)
																																																																														SC(clone3) SC(close_range) SC(openat2) SC(pidfd_getfd) SC(faccessat2) SC(process_madvise) SC(epoll_pwait2) SC(mount_setattr) SC(
																																																																															quotactl_fd)
																																																																															SC(landlock_create_ruleset)
																																																																																SC(landlock_add_rule) SC(landlock_restrict_self) SC(memfd_secret) SC(process_mrelease) SC(futex_waitv) SC(
																																																																																	set_mempolicy_home_node)};

const char *threads__syscall_name(long nr)
{
	if (nr < 0 || (size_t)nr >= sizeof(names) / sizeof(names[0]))
		return NULL;
	return names[nr];
}
