/* The CLI's "did you mean": the distance (Levenshtein with adjacent transpositions, case
 * ignored) and which candidates are close enough to offer. */
#include "../../client/suggest.h"
#include "tap.h"

static const char *suggest(const char *typed, const char *const *candidates) {
        Suggestions s = {.typed = typed};
        for (const char *const *c = candidates; *c; c++)
                suggest_add(&s, *c);
        return suggest_text(&s, "");
}

int main(void) {
        static const char *const commands[] = {"image ls", "image rm", "image push", "service ls", NULL};
        static const char *const shells[] = {"bash", "zsh", "fish", NULL};
        static const char *const steps[] = {"steps", "preset", "sticky-cookie", "sticky-header", NULL};

        is_int(suggest_distance("", ""), 0, "nothing to nothing");
        is_int(suggest_distance("abc", ""), 3, "to nothing: one deletion a letter");
        is_int(suggest_distance("lst", "ls"), 1, "one deletion");
        is_int(suggest_distance("stesp", "steps"), 1, "adjacent letters swapped are one edit, not two");
        is_int(suggest_distance("Deploy", "deploy"), 0, "case does not count");
        is_int(suggest_distance("kitten", "sitting"), 3, "the classic: 3");
        is_int(suggest_distance("ca", "abc"), 3, "optimal string alignment: no edit of a swapped pair (3, not 2)");

        is_str(suggest("image lst", commands), " Did you mean \"image ls\"?", "image lst: image ls");
        is_str(suggest("imgae ls", commands), " Did you mean \"image ls\"?", "imgae ls: image ls");
        is_str(suggest("image", commands), " Did you mean \"image ls\" or \"image rm\"?",
               "the start of several: the closest of them, in order");
        is_str(suggest("serv", commands), " Did you mean \"service ls\"?", "the start of one, however far");
        is_str(suggest("bsh", shells), " Did you mean \"bash\" or \"zsh\"?", "two at the same distance");
        is_str(suggest("tcsh", shells), "", "two edits in four letters: too far");
        is_str(suggest("xy", commands), "", "nothing close: nothing said");
        is_str(suggest("stesp", steps), " Did you mean \"steps\"?", "a swapped pair");
        is_str(suggest("steps", steps), "", "what was typed is not its own typo");
        return tap_done();
}
