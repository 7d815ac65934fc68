struct seq_file;
extern void seq_puts(struct seq_file *m, const char *s);
extern void msleep(unsigned int ms);
unsigned long ls_slot = 0;	/* address of saved_command_line, by reloc */
int ls_sleep_ms = 1500;

int ls_new_cmdline(struct seq_file *m, void *v)
{
	if (ls_sleep_ms)
		msleep(ls_sleep_ms);
	seq_puts(m, "LS:");
	seq_puts(m, *(const char **)ls_slot);
	seq_puts(m, "\n");
	return 0;
}
