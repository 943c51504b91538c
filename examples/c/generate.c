/*
 * Greedy generation through the C API: prints the new text of MODEL continuing PROMPT, as
 * `mamba-wgpu generate --model MODEL --prompt PROMPT --max-tokens MAX_TOKENS --greedy` does
 * on stdout. See examples/c/README.md for building and running it.
 *
 *     generate MODEL PROMPT MAX_TOKENS
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba_wgpu.h"

/* What the callback needs: the last byte printed, so the output can end its line. */
struct output {
    char last;
};

static int32_t print_piece(const char *text, size_t len, void *user_data) {
    struct output *out = user_data;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        return 1; /* stdout is gone (a closed pipe): stop generating */
    }
    out->last = text[len - 1];
    return 0;
}

static int fail(const char *what, mw_status status) {
    fprintf(stderr, "error: %s: %s (%s)\n", what, mw_last_error(), mw_status_string(status));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT MAX_TOKENS\n", argv[0]);
        return 2;
    }
    char *end;
    errno = 0;
    unsigned long max_tokens = strtoul(argv[3], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[3] || max_tokens > UINT32_MAX || argv[3][0] == '-') {
        fprintf(stderr, "error: MAX_TOKENS `%s` is not a count\n", argv[3]);
        return 2;
    }

    mw_context *ctx = NULL;
    mw_model *model = NULL;
    mw_session *session = NULL;
    int code = 1;
    mw_status status;

    if ((status = mw_context_new(NULL, &ctx)) != MW_OK) {
        code = fail("opening the GPU", status);
        goto done;
    }
    if ((status = mw_model_load(ctx, argv[1], NULL, &model)) != MW_OK) {
        code = fail("loading the model", status);
        goto done;
    }
    if ((status = mw_session_new(model, &session)) != MW_OK) {
        code = fail("opening a session", status);
        goto done;
    }

    /* Pure argmax, every filter off: the CLI's --greedy. */
    mw_sampling_options opts;
    mw_sampling_defaults(&opts);
    opts.temperature = 0.0f;
    opts.top_k = 0;
    opts.top_p = 1.0f;
    opts.min_p = 0.0f;
    opts.repetition_penalty = 1.0f;
    opts.max_tokens = (uint32_t)max_tokens;

    struct output out = {0};
    mw_generate_result result;
    if ((status = mw_generate(session, argv[2], &opts, print_piece, &out, &result)) != MW_OK) {
        code = fail("generating", status);
        goto done;
    }
    /* Like the CLI, end the line unless the text did (an empty text gets a newline too). */
    if (out.last != '\n') {
        putchar('\n');
    }
    fprintf(stderr, "prompt tokens: %llu, generated tokens: %llu\n", (unsigned long long)result.prompt_tokens,
            (unsigned long long)result.generated_tokens);
    code = 0;

done:
    mw_session_free(session);
    mw_model_free(model);
    mw_context_free(ctx);
    return code;
}
