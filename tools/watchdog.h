/* One watchdog for whatever might hang for ever: `tally stress`'s rounds
 * and the tests that wait on a lock (tools/watchdog.c). */
#ifndef TALLY_WATCHDOG_H
#define TALLY_WATCHDOG_H

/*
 * Arm: unless watchdog_disarm() comes first, `seconds` from now (at least
 * 1) the process writes `message` to stderr as it is (end it with a
 * newline) and exits at once with `status`, from the SIGALRM handler, with
 * no atexit handlers and no stdio flush: whatever is stuck may hold their
 * locks.  The message is copied (at most 1023 bytes), so the caller's
 * buffer may go.  Arming again replaces the deadline and the message.  One
 * watchdog per process: it owns SIGALRM and alarm().
 */
void watchdog_arm(unsigned seconds, int status, const char *message);
void watchdog_disarm(void);

#endif /* TALLY_WATCHDOG_H */
