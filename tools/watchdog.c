/* A watchdog on SIGALRM: say what hung and exit (tools/watchdog.h). */
#include "watchdog.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Written only while no alarm is pending (watchdog_arm() disarms first), so
 * the handler never reads a half-written message. */
static char message_buf[1024];
static size_t message_len;
static volatile sig_atomic_t exit_status;

static void on_alarm(int sig)
{
	(void)sig;
	/* Nothing to do when stderr is gone: the status still says it. */
	if (write(STDERR_FILENO, message_buf, message_len) < 0)
		_exit(exit_status);
	_exit(exit_status);
}

void watchdog_arm(unsigned seconds, int status, const char *message)
{
	struct sigaction sa;

	watchdog_disarm();
	message_len = strlen(message);
	if (message_len >= sizeof(message_buf))
		message_len = sizeof(message_buf) - 1;
	memcpy(message_buf, message, message_len);
	exit_status = status;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds ? seconds : 1);
}

void watchdog_disarm(void)
{
	alarm(0);
}
