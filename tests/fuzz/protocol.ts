/**
 * The lines a fuzz runner process writes on stdout for its campaign, one event per line:
 *
 *     S <case>                          a case starts (the campaign's watchdog times it)
 *     E <case> <a|r|f> <ms> <bytes>     it ended: accepted, rejected or failed; its time and
 *                                       largest allocation
 *     F <json FailureMessage>           a failure, with what replays it
 *     R <json string>                   a rejection message (only when asked for)
 *     D <bytes>                         all cases ran; the process's peak resident memory
 *
 * @module
 */

/** A case that crashed, hung, ran slow or allocated over its bound. */
export interface FailureMessage {
  index: number;
  kind: "crash" | "hang" | "slow" | "allocation";
  detail: string;
}
