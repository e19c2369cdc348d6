/*
 * The ownership protocol of provisioning/protocol.go, as spin checks it.
 *
 * One server. Job A (owner 1) creates database NAME, then renames it to
 * NAME2, then drops it; each of the three jobs has two deliveries that run
 * at once or one after the other, and any delivery may die between any two
 * of its statements (a crash is a delivery that stops; the other delivery
 * is the redelivery). Job B (owner 2) wants NAME too. A foreign actor
 * creates and drops databases under NAME and NAME2 at any moment, never
 * under a scratch name (the system's own namespace, ScratchPrefix).
 *
 * Each step below is one SQL statement (or one transaction) of the
 * PostgreSQL engine, atomic as the server makes it; between two steps
 * anything else may run. Steps stand for:
 *   reserve          Engine.Reserve (postgres/reservations.go)
 *   read_res, ident  ReservationStore.Reservation, .Identity
 *   mark_making      Scratcher.MarkMaking
 *   copy             the CREATE DATABASE of MakePublished's make (engine.go create)
 *   publish          Publisher.Publish: rename scratch->NAME, made, identity, one tx
 *   drop_scratch     Scratcher.DropScratch
 *   set_state        ReservationStore.SetState
 *   rename_tx        postgres Engine.RenameDatabase's transaction (rename,
 *                    oid check, new name made)
 *   tomb_tx          postgres Engine.DropDatabase's transaction (rename to
 *                    the scratch name, oid check), then drop_scratch
 *   record, rename_scratch  MakeStaged's SetState(making, identity) and
 *                    Stager.RenameScratch (sqlserver/engine.go)
 * and the proctypes stand for provisioning.MakePublished (Create),
 * provisioning.MakeStaged (CreateStaged), provisioning.Move (Rename) and
 * provisioning.Drop (Drop).
 *
 * What is checked: every database the system adopts, marks made, renames
 * or drops is one the system itself copied (sysmade), and a database the
 * foreign actor made is never renamed or dropped by the system
 * (assertions, safety). For each SCENARIO (see init),
 * `spin -a -DSCENARIO=n ownership.pml && cc -DSAFETY pan.c && ./pan` must
 * report no errors; with -DADOPT_ON_DUPLICATE (the bug the publish
 * protocol removed: a database under a making name taken for the
 * system's) scenarios 1 and 4 must give a counterexample, and with
 * -DDROP_BY_NAME (a drop that checks the identity and then drops by name,
 * two statements) scenario 3 must, and with -DRECORD_OVER_PUBLISHED (a
 * staged create that records its copy over one another delivery already
 * published) scenario 4 must, as the system disowns its own copy.
 * provisioning/model_test.go runs them.
 */

#define NONE     0
#define RESERVED 1
#define MAKING   2
#define MADE     3

#define MAXID 10

/* Databases: the identity under each name, 0 for none. */
byte nm = 0;     /* NAME */
byte nm2 = 0;    /* NAME2 */
byte scr[3];     /* scratch copy of NAME's reservation, by owner */
byte scr2 = 0;   /* scratch name of NAME2's reservation (owner 1) */
bool sysmade[MAXID];
byte nextid = 1;

/* Reservations of NAME and NAME2. */
byte r_owner = 0; byte r_state = NONE; byte r_ident = 0;
byte r2_owner = 0; byte r2_state = NONE; byte r2_ident = 0;

/* Foreign databases made, and a limit to keep the model finite. */
byte foreign_made = 0;

#define CRASH if :: true -> goto done :: true -> skip fi

inline newdb(v, sys) {
	v = nextid; sysmade[nextid] = sys; nextid++
}

/* MakePublished for owner o. */
proctype Create(byte o) {
	byte st, id, cur;
	/* reserve */
	atomic {
		if
		:: r_owner == NONE -> r_owner = o; r_state = RESERVED; r_ident = 0
		:: r_owner == o -> skip
		:: else -> goto done /* ErrConflict naming the holder */
		fi
	}
	CRASH;
	/* toCreate: read_res, then ident */
	atomic {
		if
		:: r_owner != o -> goto done
		:: else -> st = r_state; id = r_ident
		fi
	}
	cur = nm;
	if
	:: cur != 0 ->
		/* existing() */
#ifdef ADOPT_ON_DUPLICATE
		if
		:: st != RESERVED -> assert(sysmade[cur]); goto done
		:: else -> goto done
		fi;
#endif
		if
		:: st == MADE && id == cur -> assert(sysmade[cur]) /* adopted: Same */
		:: st == MAKING -> atomic { scr[o] = 0 } /* conflict; drop_scratch */
		:: else -> skip /* conflict */
		fi;
		goto done
	:: else
	fi;
	CRASH;
	/* mark_making */
	atomic { if :: r_owner == o && r_state == RESERVED -> r_state = MAKING :: else fi }
	CRASH;
	/* copy: CREATE DATABASE scratch (created=false when it is there) */
	atomic { if :: scr[o] == 0 && nextid < MAXID -> newdb(scr[o], true) :: else fi }
	CRASH;
	/* publish: one transaction */
	atomic {
		if
		:: scr[o] == 0 -> goto meanwhile            /* ErrScratchGone */
		:: nm != 0 -> goto meanwhile                /* ErrConflict: duplicate */
		:: r_owner != o -> goto done                /* reservation gone */
		:: else ->
			assert(sysmade[scr[o]]);
			nm = scr[o]; scr[o] = 0; r_state = MADE; r_ident = nm;
			goto done
		fi
	}
meanwhile:
	/* publishedMeanwhile: made, and the database under NAME is the recorded one */
	atomic {
		if
		:: r_owner == o && r_state == MADE && r_ident != 0 && nm == r_ident ->
			assert(sysmade[nm])
		:: else -> skip
		fi
	}
	CRASH;
	atomic { scr[o] = 0 } /* drop_scratch (surplus or unpublishable copy) */
done:
	skip
}

/* MakeStaged for owner o (SQL Server): the copy's identity is recorded
 * while making, then the copy is renamed (a statement of its own), then
 * the name is marked made. */
proctype CreateStaged(byte o) {
	byte st, id, cur, copyid;
	atomic {
		if
		:: r_owner == NONE -> r_owner = o; r_state = RESERVED; r_ident = 0
		:: r_owner == o -> skip
		:: else -> goto done
		fi
	}
	CRASH;
	atomic {
		if
		:: r_owner != o -> goto done
		:: else -> st = r_state; id = r_ident
		fi
	}
	cur = nm;
	if
	:: cur != 0 ->
#ifdef ADOPT_ON_DUPLICATE
		if
		:: st != RESERVED -> assert(sysmade[cur]); goto done
		:: else -> goto done
		fi;
#endif
		if
		:: st == MAKING && id != 0 && id == cur ->
			assert(sysmade[cur]); /* renamed by a dead delivery: mark made */
			atomic { if :: r_owner == o -> r_state = MADE :: else fi }
		:: st == MADE && id == cur -> assert(sysmade[cur]) /* adopted */
		:: st == MAKING -> atomic { scr[o] = 0 }
		:: else -> skip
		fi;
		goto done
	:: else
	fi;
	CRASH;
	atomic { if :: r_owner == o && r_state == RESERVED -> r_state = MAKING :: else fi }
	CRASH;
	atomic { if :: scr[o] == 0 && nextid < MAXID -> newdb(scr[o], true) :: else fi }
	CRASH;
	copyid = scr[o];
	if
	:: copyid == 0 -> goto meanwhile
	:: else
	fi;
#ifndef RECORD_OVER_PUBLISHED
	/* Holds: another delivery renamed its copy under NAME meanwhile; this
	 * copy is surplus, and recording it would disown the published one. */
	atomic {
		if
		:: r_owner == o && r_ident != 0 && nm == r_ident -> assert(sysmade[nm]); r_state = MADE;
			if :: scr[o] != 0 && scr[o] != r_ident -> scr[o] = 0 :: else fi;
			goto done
		:: else
		fi
	}
	CRASH;
#endif
	/* record the copy's identity, still making */
	atomic { if :: r_owner == o -> r_state = MAKING; r_ident = copyid :: else -> goto done fi }
	CRASH;
	/* rename the copy to NAME */
	atomic {
		if
		:: scr[o] == 0 || nm != 0 -> goto meanwhile
		:: else -> assert(sysmade[scr[o]]); nm = scr[o]; scr[o] = 0
		fi
	}
	CRASH;
	atomic { if :: r_owner == o -> r_state = MADE :: else fi }
	goto done;
meanwhile:
	/* another delivery renamed a copy first: the system's only when the
	 * database under NAME is the copy recorded last */
	atomic {
		if
		:: r_owner == o && r_ident != 0 && nm == r_ident -> assert(sysmade[nm]); r_state = MADE
		:: else -> skip
		fi
	}
	CRASH;
	atomic { if :: scr[o] != 0 && scr[o] != r_ident -> scr[o] = 0 :: else fi }
done:
	skip
}

/* Move NAME -> NAME2 for owner 1; its rename is one transaction. */
proctype Rename() {
	byte st, id, st2, id2, cur, cur2;
	atomic {
		if
		:: r2_owner == NONE -> r2_owner = 1; r2_state = RESERVED; r2_ident = 0
		:: r2_owner == 1 -> skip
		:: else -> goto done
		fi
	}
	CRASH;
	/* MadeBy(old), OwnedBy(new) */
	atomic { if :: r_owner != 1 || r_state != MADE -> goto done :: else -> st = r_state; id = r_ident fi }
	atomic { if :: r2_owner != 1 -> goto done :: else -> st2 = r2_state; id2 = r2_ident fi }
	cur = nm;
	cur2 = nm2;
	if
	:: cur != 0 && cur2 == 0 ->
		if
		:: id == 0 || id != cur -> goto done /* Same: conflict */
		:: else
		fi;
		CRASH;
		/* set_state: NAME2 making, expected identity */
		atomic { if :: r2_owner == 1 -> r2_state = MAKING; r2_ident = cur :: else -> goto done fi }
		CRASH;
		/* rename_tx: ALTER DATABASE RENAME, oid check, made */
		atomic {
			if
			:: nm == 0 || nm2 != 0 -> skip /* the statement fails, nothing changes */
			:: nm != r2_ident -> skip      /* oid differs: rolled back */
			:: else ->
				assert(sysmade[nm]);
				nm2 = nm; nm = 0; r2_state = MADE
			fi
		}
	:: cur == 0 && cur2 != 0 && st2 != RESERVED && id2 != 0 && id2 == cur2 ->
		/* done by an earlier delivery */
		assert(sysmade[cur2]);
		atomic { if :: r2_owner == 1 -> r2_state = MADE :: else fi }
	:: else -> skip /* conflict */
	fi;
done:
	skip
}

/* Drop NAME2 for owner 1: move it to its scratch name checking its
 * identity in one transaction, then drop the scratch copy. */
proctype Drop() {
	byte st, id, cur;
	atomic { if :: r2_owner != 1 -> goto done :: else -> st = r2_state; id = r2_ident fi }
	cur = nm2;
	if
	:: cur == 0 ->
		/* gone; a tomb left by a dead delivery holds the recorded identity */
		atomic { if :: scr2 != 0 && scr2 == id -> assert(sysmade[scr2]); scr2 = 0 :: else fi }
		goto done
	:: else
	fi;
	if
	:: st != MADE || id == 0 || id != cur -> goto done /* MadeBy, Same */
	:: else
	fi;
	CRASH;
#ifdef DROP_BY_NAME
	/* DROP DATABASE NAME2, after the check above, whatever is there now */
	atomic { assert(nm2 == 0 || sysmade[nm2]); nm2 = 0 }
	goto done;
#endif
	/* tomb_tx */
	atomic {
		if
		:: nm2 != 0 && scr2 == 0 && nm2 == id -> scr2 = nm2; nm2 = 0
		:: else -> goto done /* fails or rolled back: conflict */
		fi
	}
	CRASH;
	/* drop_scratch */
	atomic { assert(scr2 == 0 || sysmade[scr2]); scr2 = 0 }
done:
	skip
}

/* When nothing can move any more, a database the system copied that sits
 * under NAME is the one NAME's reservation records: the system never
 * disowns its own copy (a later delivery would take it for someone
 * else's). */
proctype Recognised() {
	timeout -> assert(nm == 0 || !sysmade[nm] || r_ident == nm)
}

proctype Foreign() {
	do
	:: atomic { nm == 0 && foreign_made < 2 && nextid < MAXID -> newdb(nm, false); foreign_made++ }
	:: atomic { nm2 == 0 && foreign_made < 2 && nextid < MAXID -> newdb(nm2, false); foreign_made++ }
	:: atomic { nm != 0 -> nm = 0 }   /* dropped by hand, whoever made it */
	:: atomic { nm2 != 0 -> nm2 = 0 }
	:: break
	od
}

/* Four scenarios, each checked on its own to keep the state space small:
 * the create (two deliveries of A, one of B wanting the same name), the
 * rename of A's database (two deliveries), its drop (two deliveries), and
 * the staged create of SQL Server (as the first), each with the foreign
 * actor. -DSCENARIO=1, 2, 3 or 4. */
#ifndef SCENARIO
#define SCENARIO 1
#endif

init {
	atomic {
#if SCENARIO == 1
		run Create(1); run Create(1); run Create(2);
		run Recognised();
#endif
#if SCENARIO == 2
		newdb(nm, true); r_owner = 1; r_state = MADE; r_ident = nm;
		run Rename(); run Rename();
#endif
#if SCENARIO == 3
		newdb(nm2, true); r2_owner = 1; r2_state = MADE; r2_ident = nm2;
		run Drop(); run Drop();
#endif
#if SCENARIO == 4
		run CreateStaged(1); run CreateStaged(1); run CreateStaged(2);
		run Recognised();
#endif
		run Foreign()
	}
}
