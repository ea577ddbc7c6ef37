/* The subcommands of `tally`, one file each. */
#ifndef TALLY_COMMANDS_H
#define TALLY_COMMANDS_H

int cmd_list(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_stress(int argc, char **argv);
int cmd_shm(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
